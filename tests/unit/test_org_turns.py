"""`OrgGate.turn`: an organisation's report reads run at most `reads` at once, the next ones
wait their turn (then 429), and another organisation's never wait for them."""

from __future__ import annotations

import asyncio

import pytest

from services.api.errors import TooBusyError
from services.api.org_gate import OrgGate


async def test_reads_past_the_cap_wait_their_turn_and_others_do_not() -> None:
    gate = OrgGate(4, reads=2, wait_s=5.0)
    release = asyncio.Event()
    order: list[str] = []

    async def read(org_id: int, name: str) -> None:
        async with gate.turn(org_id):
            order.append(f"{name} in")
            await release.wait()
        order.append(f"{name} out")

    held = [asyncio.create_task(read(1, n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    third = asyncio.create_task(read(1, "c"))  # waits: org 1 has 2 running
    await asyncio.sleep(0.01)
    assert order == ["a in", "b in"]
    async with asyncio.timeout(1):  # another organisation goes straight in
        async with gate.turn(2):
            order.append("other org in")
    assert order == ["a in", "b in", "other org in"]
    release.set()
    await asyncio.gather(*held, third)
    assert order.index("c in") > order.index("a out")  # c ran only once a turn was free
    assert gate._turns == {} and not gate._in_turn  # nothing kept for idle organisations


async def test_a_read_that_waits_too_long_is_refused_with_429() -> None:
    gate = OrgGate(4, reads=1, wait_s=0.05)
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.turn(7):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    with pytest.raises(TooBusyError, match="API_ORG_READS"):
        async with gate.turn(7):
            pass
    release.set()
    await holder
    async with gate.turn(7):  # free again
        pass
    assert gate._turns == {} and not gate._in_turn
