"""Server-sent events of a streamed httpx response, parsed by httpx-sse (not by hand) for the tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from httpx_sse import EventSource

__all__ = ["iter_sse_events", "sse_events"]


def iter_sse_events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs as they arrive, so a test can stop reading (disconnect) mid-stream.

    Raises httpx_sse.SSEError when the response is not ``text/event-stream``.
    """
    for sse in EventSource(response).iter_sse():
        yield sse.event, sse.json()


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Every (event, data) pair of the stream, in order."""
    return list(iter_sse_events(response))
