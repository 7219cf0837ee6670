"""Calls that meet travel together: the calling side (Coalescer) and the answering side (Batchable)."""

from __future__ import annotations

import asyncio

import pytest
from codeintel.errors import InputError, ReplicaLostError
from codeintel.service.coalesce import Batchable, Coalescer


class Echo(Batchable):
    BATCHED = frozenset({"double", "fail"})

    def double(self, x: int) -> int:
        return 2 * x

    def fail(self, why: str) -> int:
        raise ValueError(why)

    def secret(self) -> str:
        return "not for batches"

    def odd(self) -> int:
        raise Unpicklable()


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("holds a JVM object")


class Backend:
    """A back end one call at a time, answering when the test lets it: records what each call carried."""

    def __init__(self, target: Batchable) -> None:
        self.target, self.calls, self.gate, self.arrived = target, [], asyncio.Event(), asyncio.Event()

    async def send(self, calls):
        self.calls.append([name for name, _ in calls])
        self.arrived.set()
        await self.gate.wait()
        return self.target.call_many(calls)

    async def busy(self, coalescer: Coalescer, x: int) -> asyncio.Future:
        """This back end holding a first call, ``double(x)``: the future of its answer."""
        first = asyncio.ensure_future(coalescer.call("double", x))
        await self.arrived.wait()
        return first


def test_batchable_answers_each_call_and_keeps_failures_apart():
    results = Echo().call_many([("double", (2,)), ("fail", ("bad",)), ("secret", ()), ("double", (5,))])
    assert results[0] == 4 and results[3] == 10
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad"
    assert isinstance(results[2], InputError)  # only the listed reads may ride in a batch


def test_an_error_that_cannot_travel_is_described_instead():
    class Odd(Echo):
        BATCHED = Echo.BATCHED | {"odd"}

    [result] = Odd().call_many([("odd", ())])
    assert isinstance(result, RuntimeError) and str(result).startswith("Unpicklable")


def test_calls_made_together_travel_as_one():
    async def run():
        backend = Backend(Echo())
        backend.gate.set()
        sizes = []
        coalescer = Coalescer(backend.send, observe=sizes.append)
        assert await asyncio.gather(*(coalescer.call("double", i) for i in range(5))) == [0, 2, 4, 6, 8]
        return backend.calls, sizes

    calls, sizes = asyncio.run(run())
    assert calls == [["double"] * 5] and sizes == [5]


def test_calls_made_while_one_is_out_wait_and_go_together():
    async def run():
        backend = Backend(Echo())
        coalescer = Coalescer(backend.send, max_in_flight=1)
        first = await backend.busy(coalescer, 1)
        later = [asyncio.ensure_future(coalescer.call("double", i)) for i in (2, 3)]
        await asyncio.sleep(0.01)
        assert len(backend.calls) == 1  # the two later calls wait for the first to come back
        backend.gate.set()
        return await first, await asyncio.gather(*later), backend.calls

    first, later, calls = asyncio.run(run())
    assert first == 2 and later == [4, 6]
    assert calls == [["double"], ["double", "double"]]


def test_an_idle_coalescer_sends_at_once():
    async def run():
        backend = Backend(Echo())
        backend.gate.set()
        coalescer = Coalescer(backend.send, max_in_flight=1)
        return [await coalescer.call("double", i) for i in range(3)], backend.calls

    results, calls = asyncio.run(run())
    assert results == [0, 2, 4] and calls == [["double"]] * 3


def test_one_calls_failure_is_its_own():
    async def run():
        backend = Backend(Echo())
        backend.gate.set()
        coalescer = Coalescer(backend.send)
        return await asyncio.gather(coalescer.call("double", 1), coalescer.call("fail", "only me"), return_exceptions=True)

    ok, failed = asyncio.run(run())
    assert ok == 2 and isinstance(failed, ValueError) and str(failed) == "only me"


def test_a_lost_back_end_fails_every_call_it_carried():
    async def lost(calls):
        raise ReplicaLostError("RayActorError: the replica died")

    async def run():
        coalescer = Coalescer(lost)
        return await asyncio.gather(*(coalescer.call("double", i) for i in range(3)), return_exceptions=True)

    assert all(isinstance(r, ReplicaLostError) for r in asyncio.run(run()))


def test_a_caller_that_gives_up_leaves_the_others_their_answers():
    async def run():
        backend = Backend(Echo())
        coalescer = Coalescer(backend.send, max_in_flight=1)
        blocker = await backend.busy(coalescer, 0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(coalescer.call("double", 1), 0.01)  # gives up while waiting its turn
        waiting = asyncio.ensure_future(coalescer.call("double", 2))
        await asyncio.sleep(0.01)
        backend.gate.set()
        return await blocker, await waiting, backend.calls

    blocker, waiting, calls = asyncio.run(run())
    assert blocker == 0 and waiting == 4
    assert calls == [["double"], ["double"]]  # the abandoned call was never sent
