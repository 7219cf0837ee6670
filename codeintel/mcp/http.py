"""Async client for the codeintel HTTP API, the one place where HTTP failures become ServiceError.

Everything the service can answer with (an RFC 9457 problem, a 503 from a down index, a proxy's
plain-text error) and everything the network can do (refused, timed out) reaches callers as one
:class:`~codeintel.errors.ServiceError` carrying a sentence an agent can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource

from codeintel.errors import ServiceError

__all__ = ["CodeIntelClient", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"


class CodeIntelClient:
    """One pooled httpx client per MCP server process; every call takes the caller's session id."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout_s: float = 60.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------------
    def _unreachable(self, exc: httpx.HTTPError) -> ServiceError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return ServiceError(f"codeintel server at {self.base_url} is unreachable ({type(exc).__name__}); "
                                "start it with `codeintel serve --index DIR` or point --url / CODEINTEL_URL at a running one")
        if isinstance(exc, httpx.TimeoutException):
            return ServiceError(f"codeintel server at {self.base_url} did not answer in time ({type(exc).__name__})")
        return ServiceError(f"request to codeintel server at {self.base_url} failed: {type(exc).__name__}: {exc}")

    @staticmethod
    def _problem(response: httpx.Response) -> ServiceError:
        """The problem details of an error response (or its text when it is not problem+json)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and ("detail" in body or "title" in body):
            detail = body.get("detail") or body.get("title") or ""
            reasons = body.get("reasons")
            if reasons and isinstance(reasons, list):
                detail = f"{detail}; " if detail else ""
                detail += "reasons: " + "; ".join(map(str, reasons))
            return ServiceError(str(detail), response.status_code, str(body.get("title") or response.reason_phrase))
        text = " ".join(response.text.split())[:300] or response.reason_phrase
        return ServiceError(text, response.status_code, response.reason_phrase or "HTTP error")

    async def _call(self, method: str, path: str, *, session: str | None = None, body: Any = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        headers = {"X-Session-ID": session} if session else {}
        try:
            response = await self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code not in ok:
            raise self._problem(response)
        return response

    # -- API ------------------------------------------------------------------------------------
    async def search(self, body: dict, session: str | None) -> dict:
        return (await self._call("POST", "/v1/search", session=session, body=body)).json()

    async def answer(self, body: dict, session: str | None) -> AsyncIterator[tuple[str, dict]]:
        """The answer's server-sent events as (event, data) pairs, in order."""
        headers = {"X-Session-ID": session} if session else {}
        try:
            async with self._http.stream("POST", "/v1/answer", json=body, headers=headers, timeout=httpx.Timeout(300.0, connect=5.0)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._problem(response)
                async for sse in EventSource(response).aiter_sse():
                    if sse.data:
                        yield sse.event, sse.json()
        except httpx.HTTPError as exc:  # SSEError (a 200 that is not an event stream) is one too
            raise self._unreachable(exc) from None

    async def put_scope(self, scope: dict, session: str) -> dict:
        return (await self._call("PUT", "/v1/scope", session=session, body=scope)).json()

    async def get_scope(self, session: str) -> dict | None:
        """The session's scope, or None when none is set (or it expired)."""
        response = await self._call("GET", "/v1/scope", session=session, ok=(200, 404))
        return response.json()["scope"] if response.status_code == 200 else None

    async def delete_scope(self, session: str) -> bool:
        """Whether a scope was set (and is now gone)."""
        return (await self._call("DELETE", "/v1/scope", session=session, ok=(204, 404))).status_code == 204

    async def readiness(self) -> dict:
        """``/readyz``: mode ready|degraded|down with reasons (a 503 there is an answer, not an error)."""
        response = await self._call("GET", "/readyz", ok=(200, 503))
        try:
            return response.json()
        except ValueError:
            raise self._problem(response) from None

    async def status(self) -> dict:
        return (await self._call("GET", "/v1/status")).json()

    async def chunks(self, uri: str, start_line: int | None, end_line: int | None) -> dict:
        return (await self._call("POST", "/v1/chunks", body={"uri": uri, "start_line": start_line, "end_line": end_line})).json()

    async def file(self, uri: str, start_line: int, end_line: int | None) -> dict:
        return (await self._call("POST", "/v1/file", body={"uri": uri, "start_line": start_line, "end_line": end_line})).json()

    async def definitions(self, body: dict, session: str | None) -> dict:
        return (await self._call("POST", "/v1/definitions", session=session, body=body)).json()

    async def references(self, body: dict, session: str | None) -> dict:
        return (await self._call("POST", "/v1/references", session=session, body=body)).json()

    async def outline(self, uri: str) -> dict:
        return (await self._call("POST", "/v1/outline", body={"uri": uri})).json()

    async def start_reindex(self, rebuild: bool = False) -> dict:
        return (await self._call("POST", "/v1/reindex", body={"rebuild": rebuild}, ok=(200, 202))).json()

    async def reindex_job(self, job_id: str) -> dict:
        return (await self._call("GET", f"/v1/reindex/{job_id}")).json()
