"""The /v1/answer event stream as its clients read it (via httpx-sse): the CLI, the MCP client, the test helper."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest
from httpx_sse import SSEError

from codeintel.cli import main
from codeintel.errors import ServiceError
from codeintel.mcp.http import CodeIntelClient
from helpers_sse import sse_events

EVENTS = [
    ("hit", {"n": 1, "uri": "app/config.py", "start_line": 3, "end_line": 9, "symbol": "load_config"}),
    ("hit", {"n": 2, "uri": "README.md", "start_line": 1, "end_line": 4, "symbol": ""}),
    ("token", {"text": "Settings are read "}),
    ("token", {"text": "by load_config [1].\n"}),
    ("citation", {"n": 1, "uri": "app/config.py", "start_line": 3, "end_line": 9}),
    ("citation", {"n": 2, "uri": "README.md", "start_line": 1, "end_line": 4, "attributed": True}),
    ("done", {"trace_id": "t" * 32, "hits": 2, "ms": 41.6, "mode": "extractive"}),
]
# as the ingress writes it, plus what SSE also allows: a comment, CRLF line ends
STREAM = ": keep-alive\n\n" + "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in EVENTS[:3]) + "".join(
    f"event: {e}\r\ndata: {json.dumps(d)}\r\n\r\n" for e, d in EVENTS[3:])
CLI_OUTPUT = (
    "hit 1: app/config.py:3-9  load_config\n"
    "hit 2: README.md:1-4\n"
    "Settings are read by load_config [1].\n"
    "  -> cites [1] app/config.py:3-9\n"
    "  -> draws on [2] README.md:1-4\n"
    f"done: trace {'t' * 32}, 2 hits, 42 ms (extractive)\n"
)


def answer_handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body["query"] == "bad":
        return httpx.Response(400, json={"title": "Bad request", "status": 400, "detail": "k: too large"},
                              headers={"content-type": "application/problem+json"})
    if body["query"] == "html":
        return httpx.Response(200, text="<html>a login page</html>", headers={"content-type": "text/html"})
    chunks = [STREAM[i:i + 7] for i in range(0, len(STREAM), 7)]  # events split across reads
    return httpx.Response(200, stream=httpx.ByteStream(b"".join(c.encode() for c in chunks)),
                          headers={"content-type": "text/event-stream"})


@contextmanager
def answer_server() -> Iterator[str]:
    """A stand-in for the Serve app: /readyz is ready, /v1/answer answers like answer_handler."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, response: httpx.Response) -> None:
            body = response.read()
            self.send_response(response.status_code)
            self.send_header("content-type", response.headers["content-type"])
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 7):  # in small writes, as a stream arrives
                self.wfile.write(body[i:i + 7])
                self.wfile.flush()

        def do_GET(self) -> None:
            self._send(httpx.Response(200, json={"mode": "ready", "reasons": []}))

        def do_POST(self) -> None:
            content = self.rfile.read(int(self.headers["content-length"]))
            self._send(answer_handler(httpx.Request("POST", self.path, content=content)))

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_ask_prints_the_stream(capsys):
    with answer_server() as url:
        assert main(["ask", "how are settings read", "--url", url, "--wait", "5"]) == 0
        captured = capsys.readouterr()
        assert captured.out == CLI_OUTPUT and captured.err == ""
        assert main(["ask", "bad", "--url", url, "--wait", "5"]) == 2
        assert "server said 400: k: too large" in capsys.readouterr().err
        assert main(["ask", "html", "--url", url, "--wait", "5"]) == 2
        err = capsys.readouterr().err
        assert "did not answer with an event stream" in err and "text/html" in err and "Traceback" not in err


def test_mcp_client_yields_events_and_one_service_error():
    async def run() -> None:
        client = CodeIntelClient("http://svc", transport=httpx.MockTransport(answer_handler))
        assert [pair async for pair in client.answer({"query": "q"}, "s1")] == EVENTS
        with pytest.raises(ServiceError) as err:
            [pair async for pair in client.answer({"query": "bad"}, "s1")]
        assert (err.value.status, err.value.detail) == (400, "k: too large")
        with pytest.raises(ServiceError, match="SSEError: Expected response header Content-Type to contain 'text/event-stream'"):
            [pair async for pair in client.answer({"query": "html"}, "s1")]
        await client.aclose()

    anyio.run(run)


def test_helper_parses_the_stream_and_refuses_other_content():
    with httpx.Client(transport=httpx.MockTransport(answer_handler)) as client:
        with client.stream("POST", "http://svc/v1/answer", json={"query": "q"}) as r:
            assert sse_events(r) == EVENTS
        with client.stream("POST", "http://svc/v1/answer", json={"query": "html"}) as r, pytest.raises(SSEError):
            sse_events(r)
