from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeintel.cli import main

from conftest import write_tree


def run_cli(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "codeintel.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
                          input=input)


@pytest.mark.parametrize(
    "args, message",
    [
        (["index", "/definitely/missing"], "path does not exist"),
        (["index", ".", "--workers", "2"], "--workers goes with --ray"),
        (["search", "q", "--index", "/definitely/missing"], "no index at"),
        (["status", "--index", "/definitely/missing"], "no index at"),
        (["search", "q", "--mode", "magic"], "invalid choice"),
        (["search", "q", "-k", "many"], "invalid int value"),
        (["frobnicate"], "invalid choice"),
        (["serve", "--index", "/definitely/missing"], "no index at"),
        (["ask", "hello", "--url", "http://127.0.0.1:9"], "is not ready"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(args)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_index_errors_exit_2(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    assert main(["index", str(tmp_path / "file.txt"), "--index", str(tmp_path / "i")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["index", str(tmp_path / "empty"), "--index", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and "nothing to index" in err


def test_index_search_status_end_to_end(small_repo, tmp_path):
    index = tmp_path / "idx"
    dry = run_cli("index", str(small_repo), "--index", str(index), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout and "estimated" in dry.stdout and not index.exists()

    done = run_cli("index", str(small_repo), "--index", str(index), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"] == 5 and report["chunks"] > 0

    again = run_cli("index", str(small_repo), "--index", str(index))
    assert again.returncode == 0 and again.stdout.startswith("up to date")

    found = run_cli("search", "send an http request with retries", "--index", str(index), "-k", "3")
    assert found.returncode == 0, found.stderr
    first = found.stdout.splitlines()[0]
    assert "app/http_client.py:1-" in first and "HttpClient" in first

    scoped = run_cli("search", "function", "--index", str(index), "--lang", "javascript", "--json", "--mode", "bm25")
    hits = json.loads(scoped.stdout)["hits"]
    assert hits and {h["uri"] for h in hits} == {"web/main.js"}

    # "-" reads the query from stdin: a pasted issue with a whole log, past what one argv string may hold
    issue = (
        "HttpClient.send_request raises ConnectionError instead of retrying\n\nWith retries=3 the request fails at once.\n"
        + "".join(f"2024-05-01 10:00:{i % 60:02d} DEBUG 再試行ループの記録 再試行ループの記録 worker-{i} tick {i}\n" for i in range(1400))
        + 'Traceback (most recent call last):\n  File "app/http_client.py", line 12, in send_request\n    raise ConnectionError(url)\n'
        + "ConnectionError: http://example.invalid/api\n"
    )
    assert 20_000 < len(issue) <= 100_000 and len(issue.encode()) > 128 * 1024
    piped = run_cli("search", "-", "--index", str(index), "-k", "3", "--json", input=issue)
    assert piped.returncode == 0, piped.stderr
    result = json.loads(piped.stdout)
    assert result["query"] == issue.strip() and result["hits"][0]["uri"] == "app/http_client.py"

    bad = run_cli("search", "x", "--index", str(index), "--include", "src/[oops")
    assert bad.returncode == 2 and "malformed glob" in bad.stderr and "Traceback" not in bad.stderr

    status = run_cli("status", "--index", str(index))
    assert status.returncode == 0 and "BAAI/bge-small-en-v1.5" in status.stdout and "dim=384" in status.stdout


def test_index_publishes_to_an_artifact_store(small_repo, tmp_path):
    from codeintel.storage.layout import IndexLayout
    from codeintel.storage.store import ArtifactStore

    index, store = tmp_path / "idx", tmp_path / "store"
    done = run_cli("index", str(small_repo), "--index", str(index), "--store", str(store))
    version = IndexLayout(index).current().name
    assert done.returncode == 0 and f"published version {version} to {store}" in done.stdout
    assert ArtifactStore(str(store)).current() == version
    again = run_cli("index", str(small_repo), "--index", str(index), "--store", str(store))  # up to date: nothing uploaded
    assert again.returncode == 0 and ArtifactStore(str(store)).versions() == [version]
    bad = run_cli("index", str(small_repo), "--index", str(index), "--store", "nosuchscheme://x")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("codeintel: error: cannot open artifact store")


def test_incompatible_index_dir_exit_2(tmp_path, small_repo, capsys):
    write_tree(tmp_path / "home", {"notes.txt": "mine\n"})
    assert main(["index", str(small_repo), "--index", str(tmp_path / "home")]) == 2
    assert "not a codeintel index directory" in capsys.readouterr().err


def test_ask_waits_on_a_proxy_that_answers_plain_text_and_fails_in_one_line(capsys):
    """Serve's proxy says "Path '/readyz' not found" in plain text until the app is deployed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotYet(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"Path '/readyz' not found. Ping http://.../-/routes for available routes."
            self.send_response(404)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotYet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["ask", "q", "--url", f"http://127.0.0.1:{server.server_port}", "--wait", "1.5"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert code == 2 and "not ready: 404 Path '/readyz' not found" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["search", "ask"])
@pytest.mark.parametrize("stdin, message", [("  \n\t", "is empty"), (b"\xff\xfe\xfa not utf-8", "not UTF-8 text")])
def test_a_query_from_stdin_that_is_empty_or_not_text_is_one_line_and_exit_2(command, stdin, message, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin if isinstance(stdin, bytes) else stdin.encode())))
    extra = ["--index", "/definitely/missing"] if command == "search" else ["--url", "http://127.0.0.1:9"]
    assert main([command, "-", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_ask_reads_the_question_from_stdin(monkeypatch, capsys):
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies: list[dict] = []

    class Server(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._reply(200, {"status": "ready"})

        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self._reply(400, {"detail": "seen"})

        def log_message(self, *args):
            pass

    question = "Why does the retry loop give up?\n" + "log line with ünïcode\n" * 6000  # ~130k UTF-8 bytes
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(question.encode())))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["ask", "-", "--url", f"http://127.0.0.1:{server.server_port}"])
    finally:
        server.shutdown()
    assert code == 2 and "server said 400: seen" in capsys.readouterr().err
    assert bodies and bodies[0]["query"] == question


def test_an_answer_stream_that_stalls_past_timeout_is_one_line_and_exit_2(capsys):
    """A CPU model's first token can be minutes away: --timeout bounds the wait, without a traceback."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Stalls(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_POST(self):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.flush()
            time.sleep(3)  # headers, then silence

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["ask", "q", "--url", f"http://127.0.0.1:{server.server_port}", "--timeout", "0.5"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert code == 2 and "sent nothing for 0.5 s" in err and "\n" not in err and "Traceback" not in err
