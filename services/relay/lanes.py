"""Each webhook endpoint in its own lane, so that one slow or failing endpoint delays only its own
deliveries.

A lane is a queue and a task: it posts its endpoint's deliveries one after the other, in the
order the relay read them (offset order per endpoint, as before). The relay's consumer goes on
reading while lanes work; a batch's offsets are committed once every delivery of that batch and
of every batch read before it has ended (posted, or dead-lettered after its retries), so a crash
never loses a delivery: what was not committed is read and sent again (at least once, as
docs/click-topic.md says).

Bounds: a lane holds at most `LANE_MAX_EVENTS` events; past that its endpoint's new deliveries
are dead-lettered at once (reason `endpoint backlog full`), not queued. All lanes together hold
at most `QUEUED_MAX_EVENTS`; past that the relay reads no more until some drain. A stalled
endpoint therefore holds back the committed offsets (a restart would send the others' recent
events again, which receivers deduplicate), never the others' deliveries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from services.relay.endpoints import Endpoint
from shared.events import ClickEvent
from shared.service import cancel

LANE_MAX_EVENTS = 2_000
"""Events one endpoint may have queued; past that its new deliveries are dead-lettered."""
QUEUED_MAX_EVENTS = 50_000
"""Events all lanes together may have queued before the relay stops reading for a while."""

Delivery = tuple[Endpoint, list[ClickEvent]]
"""One POST's worth: the endpoint and its events, at most `WEBHOOK_BATCH_MAX`."""
Send = Callable[[Endpoint, list[ClickEvent]], Awaitable[None]]
"""Delivers (or dead-letters) one chunk; raises only when even dead-lettering failed."""


@dataclass
class _Lane:
    queue: asyncio.Queue[tuple[int, Endpoint, list[ClickEvent]]] = field(
        default_factory=asyncio.Queue
    )
    queued: int = 0
    """Events waiting or being posted."""
    task: asyncio.Task[None] | None = None


class Lanes:
    """The lanes of one relay, and the bookkeeping of which batches may be committed."""

    def __init__(self, send: Send, park: Send) -> None:
        self._send = send
        self._park = park
        self._lanes: dict[int, _Lane] = {}
        self._open: dict[int, int] = {}
        """Batch number -> deliveries of it not ended yet."""
        self._offsets: dict[int, dict[TopicPartition, int]] = {}
        self._next = 0
        self.failure: BaseException | None = None
        """The first error a lane could not handle (dead-lettering failed): the relay raises it,
        and everything not committed is read again."""
        self._progress = asyncio.Event()

    @property
    def queued(self) -> int:
        """Events queued in all lanes."""
        return sum(lane.queued for lane in self._lanes.values())

    def backlog(self, endpoint_id: int) -> int:
        """Events queued for one endpoint."""
        lane = self._lanes.get(endpoint_id)
        return lane.queued if lane else 0

    async def add_batch(
        self, offsets: dict[TopicPartition, int], deliveries: list[Delivery]
    ) -> None:
        """Queue a batch's deliveries (each endpoint's in order) and remember its `offsets` (the
        next offset to read, per partition) to commit once they have all ended."""
        number = self._next
        self._next += 1
        self._offsets[number] = offsets
        self._open[number] = 0
        for endpoint, chunk in deliveries:
            lane = self._lanes.get(endpoint.id)
            if lane is None:
                lane = self._lanes[endpoint.id] = _Lane()
                lane.task = asyncio.create_task(self._run(lane), name=f"webhook-lane-{endpoint.id}")
            if lane.queued + len(chunk) > LANE_MAX_EVENTS:
                await self._park(endpoint, chunk)  # dead-lettered now: no retry, no queue
                continue
            lane.queued += len(chunk)
            self._open[number] += 1
            lane.queue.put_nowait((number, endpoint, chunk))

    def committable(self) -> dict[TopicPartition, int]:
        """The offsets that may be committed now (those of the batches whose deliveries, and
        every earlier batch's, have ended), forgotten once returned; empty if none."""
        ready: dict[TopicPartition, int] = {}
        for number in sorted(self._open):
            if self._open[number]:
                break
            ready.update(self._offsets.pop(number))
            del self._open[number]
        return ready

    async def wait_for_room(self, seconds: float) -> None:
        """Wait (at most `seconds`) while the lanes hold `QUEUED_MAX_EVENTS` or more."""
        while self.queued >= QUEUED_MAX_EVENTS and self.failure is None:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), seconds)
            except TimeoutError:
                return

    async def settle(self, seconds: float) -> None:
        """Wait up to `seconds` for every queued delivery to end."""
        try:
            async with asyncio.timeout(seconds):
                while any(self._open.values()) and self.failure is None:
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            return

    async def close(self) -> None:
        """Stop every lane; what they had not delivered is not committed (sent again later)."""
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            if lane.task is not None:
                await cancel(lane.task)
        self._open.clear()
        self._offsets.clear()
        self.failure = None

    async def _run(self, lane: _Lane) -> None:
        while True:
            number, endpoint, chunk = await lane.queue.get()
            try:
                await self._send(endpoint, chunk)
            except Exception as exc:  # dead-lettering failed: the relay reads it all again
                if self.failure is None:
                    self.failure = exc
                lane.queued -= len(chunk)
                self._progress.set()
                return
            lane.queued -= len(chunk)
            if number in self._open:
                self._open[number] -= 1
            self._progress.set()
