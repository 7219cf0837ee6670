from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Sequence

import msgspec
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

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
FAULT_LEXICAL = {"ray_actor_options": {"num_cpus": 0.25, "runtime_env": {"env_vars": {"CODEINTEL_FAULT_LEXICAL": "1"}}}}
SERVE_STATE: dict = {}
FAULT_DIM = {"ray_actor_options": {"num_cpus": 0.25, "runtime_env": {"env_vars": {"CODEINTEL_FAULT_FAISS_DIM": "768"}}}}


@pytest.fixture(scope="session")
def serve_url(tmp_path_factory, real_embedder):
    """The real Serve graph on a local Ray, started once per test session; apps: main, faulty (+ LLM), mismatch."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray import serve

    from codeintel.indexing.pipeline import Indexer
    from deployments.app import AppArgs, build_graph

    root = tmp_path_factory.mktemp("serve")
    repo = write_tree(root / "repo", SMALL_REPO)
    Indexer(embedder=real_embedder).run(repo, root / "idx")
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        cfg = AppArgs(index_dir=str(root / "idx"), ingress_replicas=2, retriever_timeout_s=10)
        serve.run(build_graph(cfg), name="main", route_prefix="/")
        # faulty: lexical retriever broken, and the real CPU LLM generating (cancellation is observable there)
        faulty = msgspec.structs.replace(cfg, ingress_replicas=1, generator="llm")
        serve.run(build_graph(faulty, {"LexicalRetriever": FAULT_LEXICAL}), name="faulty", route_prefix="/faulty")
        serve.run(build_graph(msgspec.structs.replace(cfg, ingress_replicas=1), {"FaissShard0": FAULT_DIM}), name="mismatch", route_prefix="/mismatch")
        SERVE_STATE.update(repo=repo, index=root / "idx", traces=root / "idx-traces")  # traces: build_app's default, next to the index
        yield f"http://127.0.0.1:{PORT}"
    finally:
        serve.shutdown()
        ray.shutdown()
