"""`Deadlines`: one budget for every visitor waiting on a shared lookup, one timer for them all."""

from __future__ import annotations

import asyncio

import pytest

from services.redirector.deadlines import Deadlines


async def test_the_outcome_of_the_shared_lookup_reaches_every_waiter() -> None:
    deadlines = Deadlines(1.0)
    loop = asyncio.get_running_loop()
    shared: asyncio.Future[str] = loop.create_future()
    waiters = [deadlines.wait(shared) for _ in range(3)]
    loop.call_later(0.01, shared.set_result, "found")
    assert await asyncio.gather(*waiters) == ["found"] * 3
    failed: asyncio.Future[str] = loop.create_future()
    waiter = deadlines.wait(failed)
    failed.set_exception(ConnectionError("redis"))
    with pytest.raises(ConnectionError, match="redis"):
        await waiter
    deadlines.close()


async def test_a_waiter_gives_up_at_its_budget_and_the_lookup_goes_on() -> None:
    deadlines = Deadlines(0.05)
    loop = asyncio.get_running_loop()
    shared: asyncio.Future[str] = loop.create_future()
    started = loop.time()
    early = deadlines.wait(shared)
    with pytest.raises(TimeoutError):
        await early
    waited = loop.time() - started
    assert 0.045 <= waited < 5, waited  # not before its budget (late only if the loop is)
    assert not shared.done()  # the lookup others share is not cancelled
    late = deadlines.wait(shared)  # a visitor who came later still gets the answer
    shared.set_result("found")
    assert await late == "found"
    deadlines.close()


async def test_deadlines_expire_in_arrival_order_with_one_timer() -> None:
    deadlines = Deadlines(0.05)
    loop = asyncio.get_running_loop()
    never: asyncio.Future[str] = loop.create_future()
    ended: dict[int, float] = {}

    def waiter(n: int) -> tuple[float, asyncio.Future[str]]:
        future = deadlines.wait(never)
        future.add_done_callback(lambda _: ended.__setitem__(n, loop.time()))
        return loop.time() + 0.05, future

    first = [waiter(n) for n in range(100)]
    await asyncio.sleep(0.02)
    second = [waiter(n) for n in range(100, 200)]
    await asyncio.wait([f for _, f in first + second])
    for n, (deadline, future) in enumerate(first + second):
        assert isinstance(future.exception(), TimeoutError)
        assert ended[n] >= deadline - 0.002, (n, ended[n], deadline)  # never before its time
    assert max(ended[n] for n in range(100)) <= min(ended[n] for n in range(100, 200))
    assert len(deadlines) == 0  # nothing kept once every deadline has passed
    deadlines.close()


async def test_a_visitor_who_leaves_does_not_cancel_the_lookup() -> None:
    deadlines = Deadlines(1.0)
    loop = asyncio.get_running_loop()
    shared: asyncio.Future[str] = loop.create_future()
    gone = asyncio.ensure_future(deadlines.wait(shared))
    staying = deadlines.wait(shared)
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert gone.cancelled() and not shared.done()
    shared.set_result("found")
    assert await staying == "found"
    deadlines.close()
