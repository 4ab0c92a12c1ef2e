"""Hands click events to Kafka without making the visitor wait, and without losing them.

    publish() ──► bounded queue ──► sender task ──► KafkaSink (batches, bounded send time)
                                   (gathers for `PUBLISH_LINGER_MS` per send)
        │  spooling, or queue past            │ a batch Kafka did not acknowledge
        ▼  the high-water mark                ▼
      Spool (disk, group fsync) ◄─────────────┘
        │
        └──► recovery task: once the queue is drained, replays the spool's files in order,
             switches back to the queue, replays what arrived meanwhile, removes the files.

`publish()` never waits and never fails: the event is queued, or spooled, or (only when the
spool is full or unwritable) counted as dropped. While spooling, `healthy` is false (`/readyz`
answers 503). `stop()` (SIGTERM) sends what is queued, spools what cannot be sent, writes the
spool to disk and closes the producer; files left behind are replayed at the next start.
Replays may write an event twice to the topic; the counter deduplicates by `event_id`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path

from prometheus_client import Gauge

from services.redirector.kafka_sink import KafkaSink, Record
from services.redirector.metrics import RedirectorMetrics
from services.redirector.spool import Spool
from shared.errors import DependencyError
from shared.service import cancel
from shared.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX = 4000
"""Most records the sender takes from the queue per send (one Kafka round trip)."""
REPLAY_BATCH = 2000
"""Records per send when replaying the spool (it runs beside live traffic)."""
BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class Publisher:
    """The click sink of one redirector process; `start()` / `stop()` (idempotent)."""

    def __init__(self, settings: Settings, metrics: RedirectorMetrics) -> None:
        # A deque and two events instead of asyncio.Queue: a queue's put/get/task_done cost
        # more per click than building the event. One event loop owns all three.
        self._pending: deque[Record] = deque()
        self._wakeup = asyncio.Event()  # set while records wait
        self._idle = asyncio.Event()  # set when nothing waits and no batch is in flight
        self._idle.set()
        self._high_water = settings.redirector.publish_high_water
        self._linger_s = settings.redirector.publish_linger_ms / 1000
        self._m = metrics
        self.kafka = KafkaSink(settings)
        self.spool = Spool(
            Path(settings.redirector.spool_dir),
            max_bytes=settings.redirector.spool_max_mb * 1024 * 1024,
            file_bytes=settings.redirector.spool_file_mb * 1024 * 1024,
            fsync_ms=settings.redirector.spool_fsync_ms,
        )
        self.spooling = False
        self._recover = asyncio.Event()
        self._replayed: dict[Path, int] = {}  # records of a file already acknowledged
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        registry = metrics.registry
        Gauge(
            "clicktrack_publish_queue_depth",
            "Events waiting in memory to be sent",
            registry=registry,
        ).set_function(lambda: len(self._pending))
        Gauge(
            "clicktrack_spool_bytes",
            "Bytes in the disk spool, buffered included",
            registry=registry,
        ).set_function(lambda: self.spool.size_bytes)
        Gauge(
            "clicktrack_spooling",
            "1 while events go to the spool instead of Kafka",
            registry=registry,
        ).set_function(lambda: int(self.spooling))

    @property
    def healthy(self) -> bool:
        """True when events flow straight to Kafka (not spooling)."""
        return self._started and not self.spooling

    async def start(self) -> None:
        """Open the spool, try Kafka once, start the sender and recovery tasks.

        A broker that is down at start-up does not stop the redirector: it starts spooling.
        """
        await self.spool.__aenter__()
        self._started = True
        if not self.spool.empty:
            self._enter_spooling("spool files left by an earlier run")
        else:
            try:
                await self.kafka.send([])
            except DependencyError as exc:
                self._enter_spooling(f"kafka unreachable at start-up: {exc}")
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="click-sender"),
            asyncio.create_task(self._recover_loop(), name="click-recovery"),
        ]

    def publish(self, key: bytes, value: bytes) -> None:
        """Queue one record, or spool it; never waits."""
        if not self.spooling:
            pending = self._pending
            if len(pending) < self._high_water:
                pending.append((key, value))
                if len(pending) == 1:  # the first one: wake the sender
                    self._wakeup.set()
                    self._idle.clear()
                return
            self._enter_spooling("publish queue past its high-water mark")
        self._to_spool(key, value)

    async def stop(self) -> None:
        """Drain the queue (to Kafka or the spool), flush the spool, close the producer."""
        if not self._started:
            return
        self._started = False
        if self._tasks:
            send_task, recover_task = self._tasks
            await cancel(recover_task)
            await self._idle.wait()  # the sender sends or spools each queued record
            await cancel(send_task)
            self._tasks = []
        await self.kafka.close()
        await self.spool.__aexit__(None, None, None)
        if self.spool.records_lost:
            self._m.dropped.inc(self.spool.records_lost)

    # -- internals ---------------------------------------------------------------------------

    def _enter_spooling(self, why: str) -> None:
        if not self.spooling:
            log.error("click events go to the disk spool", extra={"reason": why})
        self.spooling = True
        self._recover.set()

    def _to_spool(self, key: bytes, value: bytes) -> None:
        if self.spool.append(key, value):
            self._m.spooled.inc()
        else:
            self._m.dropped.inc()
            log.error(
                "spool full, click event dropped", extra={"key": key.decode(errors="replace")}
            )

    async def _send_loop(self) -> None:
        pending = self._pending
        while True:
            await self._wakeup.wait()
            if self._linger_s and len(pending) < BATCH_MAX and self._started:
                # Gather: a send's CPU hardly depends on its size (docs/redirector.md).
                await asyncio.sleep(self._linger_s)
            batch = [pending.popleft() for _ in range(min(len(pending), BATCH_MAX))]
            if not pending:
                self._wakeup.clear()
            try:
                if self.spooling and not self.kafka.connected:
                    raise DependencyError("kafka is known to be down")
                await self.kafka.send(batch)
                self._m.sent.inc(len(batch))
            except DependencyError as exc:
                self._m.producer_errors.inc()
                self._enter_spooling(str(exc))
                for key, value in batch:
                    self._to_spool(key, value)
            finally:
                if not pending:
                    self._idle.set()

    async def _recover_loop(self) -> None:
        failures = 0
        while True:
            await self._recover.wait()
            try:
                await self._idle.wait()  # older events still in memory go first
                await self.kafka.send([])  # is Kafka back? (connects; the spool may be empty)
                await self._replay_all()
                # Caught up: new events may go to Kafka again; then replay what came meanwhile.
                self.spooling = False
                await self._idle.wait()
                await self._replay_all()
            except DependencyError as exc:
                self.spooling = True
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "spool replay waits for kafka", extra={"retry_in_s": delay, "error": str(exc)}
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            if not self.spooling:
                self._recover.clear()
                log.info("spool replayed, click events go to kafka again")

    async def _replay_all(self) -> None:
        await self.spool.rotate()
        for path in self.spool.closed_files():
            records = await self.spool.read(path)
            # After a failed attempt, resume at the first unacknowledged batch.
            for start in range(self._replayed.get(path, 0), len(records), REPLAY_BATCH):
                chunk = records[start : start + REPLAY_BATCH]
                await self.kafka.send(chunk)
                self._m.replayed.inc(len(chunk))
                self._replayed[path] = start + len(chunk)
            self.spool.remove(path)
            self._replayed.pop(path, None)
