"""Calls to one back end that meet in one process travel as one call.

Every hop through Serve costs both ends a few milliseconds of CPU whatever it carries (routing,
serialization, the replica's dispatch); on a few cores that fixed cost, paid for each of a search's
half-dozen calls, is what the graph adds over the same search in process. A :class:`Coalescer`
keeps at most ``max_in_flight`` calls to its back end open: a call made while they are busy waits
for one to come back and then goes out together with every other call that waited. An idle
service sends each call at once (no timer, no added latency); a loaded one sends fewer, larger
calls, and the requests whose calls came back together go on to their next stage together.

The back end's side is :class:`Batchable`: ``call_many`` answers a list of ``(method, args)`` with
one result per call, an exception in place of the result where that call failed, so one bad call
does not fail the requests it travelled with.
"""

from __future__ import annotations

import asyncio
import pickle
from typing import Any, Awaitable, Callable, ClassVar, Sequence

from codeintel.errors import InputError

__all__ = ["Batchable", "Call", "Coalescer"]

Call = tuple[str, tuple]


class Batchable:
    """A back end that answers many calls in one (``call_many``); only methods named in
    ``BATCHED`` (reads) may be called this way."""

    BATCHED: ClassVar[frozenset[str]] = frozenset()

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        return [self._call_one(name, args) for name, args in calls]

    def _call_one(self, name: str, args: tuple) -> Any:
        if name not in self.BATCHED:
            return InputError(f"{type(self).__name__}.{name} cannot be called in a batch")
        try:
            return getattr(self, name)(*args)
        except Exception as exc:  # this call's failure, not the batch's
            return _portable(exc)


def _portable(exc: Exception) -> Exception:
    """``exc``, or its description where it cannot travel (a Java exception holds JVM objects):
    one unpicklable error would otherwise fail every call of the batch."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class Coalescer:
    """The calling side: ``await call(method, *args)`` resolves to that call's result or raises its error."""

    def __init__(self, send: Callable[[list[Call]], Awaitable[list[Any]]], max_in_flight: int = 1, max_batch: int = 32,
                 observe: Callable[[int], None] | None = None) -> None:
        self._send, self.max_in_flight, self.max_batch, self._observe = send, max_in_flight, max_batch, observe
        self._waiting: list[tuple[Call, asyncio.Future]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()  # the loop holds tasks weakly

    async def call(self, method: str, *args: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(((method, args), future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # on the next turn of the loop: the calls made in this turn (requests released together by
        # the last answer) go out together
        if not self._scheduled and self._waiting and self._in_flight < self.max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._launch)

    def _launch(self) -> None:
        self._scheduled = False
        batch = [(call, f) for call, f in self._waiting[: self.max_batch] if not f.done()]  # done: its caller gave up
        del self._waiting[: self.max_batch]
        if batch:
            self._in_flight += 1
            if self._observe:
                self._observe(len(batch))
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._schedule()

    async def _run(self, batch: list[tuple[Call, asyncio.Future]]) -> None:
        try:
            results = await self._send([call for call, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except BaseException as exc:  # the call as a whole failed (a lost replica): so did each it carried
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._schedule()
