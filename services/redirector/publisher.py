"""Gets click events to Kafka without making the visitor wait, and without losing them.

    publish() ──► the turn's records ── one ClickLog write a loop turn ──► the 302s are written
                      │
    shipper task ◄────┘ reads the log in order from its checkpoint, gathers for
        │               `PUBLISH_LINGER_MS`, sends (idempotent producer, bounded time),
        ▼               then checkpoints; Kafka down: retries with backoff, the log grows
      KafkaSink         (bounded by `SPOOL_MAX_MB`)

The log is the one path of every event, not a switch made during outages: what the process
answered is in the kernel before the answer leaves, so a `kill -9` loses nothing, and a restart
ships from the checkpoint (an event may reach the topic twice; the counter deduplicates by
`event_id`). `publish()` never fails: the event is logged or, only when the log is full or the
disk unwritable for long, counted as dropped; the handler awaits the turn's write (a loop turn,
not a disk: nothing is fsynced on the request path) before it answers. While Kafka does not take
the log, `healthy` is false (`/readyz` answers 503).

The shipper runs as a task of the worker, not as a process of its own: measured on the 2-core
machine, the producer's share of a redirect is a few microseconds with 50 ms batches
(docs/redirector.md), less than the cost of a second process per worker reading the log.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from pathlib import Path

from prometheus_client import Gauge

from services.redirector import legacy_spool
from services.redirector.clicklog import ClickLog
from services.redirector.clicklog_records import encode_record
from services.redirector.kafka_sink import KafkaSink
from services.redirector.metrics import RedirectorMetrics
from shared.errors import DependencyError
from shared.service import cancel
from shared.settings import Settings

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class Publisher:
    """The click sink of one redirector process: its log and its shipper; `start()` / `stop()`
    (idempotent)."""

    def __init__(self, settings: Settings, metrics: RedirectorMetrics) -> None:
        self._linger_s = settings.redirector.publish_linger_ms / 1000
        self._stop_s = settings.redirector.publish_send_timeout_ms / 1000
        self._m = metrics
        self.kafka = KafkaSink(settings)
        self.log = ClickLog(
            Path(settings.redirector.spool_dir),
            max_bytes=settings.redirector.spool_max_mb * 1024 * 1024,
            file_bytes=settings.redirector.spool_file_mb * 1024 * 1024,
            fsync_ms=settings.redirector.spool_fsync_ms,
        )
        self.spooling = False
        """True while Kafka does not take the log (its last send failed)."""
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._turn: list[bytes] = []  # records of this loop turn, written together
        self._turn_done: asyncio.Future[None] | None = None
        registry = metrics.registry
        Gauge(
            "clicktrack_spool_bytes",
            "Bytes of the click log not yet acknowledged by Kafka",
            registry=registry,
        ).set_function(lambda: self.log.unshipped_bytes)
        Gauge(
            "clicktrack_spooling",
            "1 while Kafka does not take the click log (clicks wait on disk)",
            registry=registry,
        ).set_function(lambda: int(self.spooling))

    @property
    def healthy(self) -> bool:
        """True when the log ships (Kafka took the last send)."""
        return self._started and not self.spooling

    async def start(self) -> None:
        """Open the log, try Kafka once, start the shipper (which first ships what an earlier
        run left). A broker that is down at start-up does not stop the redirector."""
        await self.log.__aenter__()
        self._started = True
        # An older redirector's outage spool in the same folder: its clicks come first.
        self._m.logged.inc(await legacy_spool.adopt(self.log))
        try:
            await self.kafka.send([])
        except DependencyError as exc:
            self._not_shipping(f"kafka unreachable at start-up: {exc}")
        self._task = asyncio.create_task(self._ship_loop(), name="click-shipper")
        self._wakeup.set()

    def publish(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        """Log one record with the others published in this turn of the event loop, in one
        write; the returned future (the turn's) is done once they are in the log, or counted as
        dropped. Never fails. Answer the click only once it is done.

        One write a turn, not one a click: under load a turn holds tens of clicks, and the
        system call with the GIL released around it cost a quarter of the redirector's rate
        (docs/redirector.md, Write ahead, then answer).
        """
        done = self._turn_done
        if done is None:
            done = self._turn_done = asyncio.get_running_loop().create_future()
            done.get_loop().call_soon(self._write_turn)
        self._turn.append(encode_record(key, value))
        return done

    def _write_turn(self) -> None:
        records, self._turn = self._turn, []
        done, self._turn_done = self._turn_done, None
        if records:
            clicks = self.log
            if clicks.append(b"".join(records), len(records)):
                logged = len(records)
                self._m.log_writes.inc()
            else:  # the log is (nearly) full: as many as still fit, in order
                logged = sum(clicks.append(record, 1) for record in records)
                self._m.log_writes.inc(logged)
            self._m.logged.inc(logged)
            if logged and not self._wakeup.is_set():
                self._wakeup.set()
            if logged < len(records):
                self._m.dropped.inc(len(records) - logged)
                log.error(
                    "click log full, click events dropped",
                    extra={"events": len(records) - logged},
                )
        if done is not None and not done.done():
            done.set_result(None)

    async def stop(self) -> None:
        """Ship what the log holds (bounded by the send timeout), then close the producer and
        the log; what Kafka did not take stays in the log for the next start."""
        if not self._started:
            return
        self._started = False
        self._write_turn()
        self._closing.set()
        self._wakeup.set()
        if self._task is not None:
            # The shipper ends after one last pass; a send is not cut in the middle (that
            # would only send its events again at the next start).
            done, _ = await asyncio.wait({self._task}, timeout=self._stop_s + 1)
            if not done:
                log.warning("click log left for the next start: kafka did not take it in time")
            await cancel(self._task)
            self._task = None
        await self.kafka.close()
        await self.log.__aexit__(None, None, None)
        if self.log.records_lost:
            self._m.dropped.inc(self.log.records_lost)

    # -- internals ---------------------------------------------------------------------------

    def _not_shipping(self, why: str) -> None:
        if not self.spooling:
            log.error("click events wait in the local log", extra={"reason": why})
        self.spooling = True

    async def _ship_loop(self) -> None:
        failures = 0
        closing = self._closing
        while True:
            await self._wakeup.wait()
            if self._linger_s and not self.spooling and not closing.is_set():
                # Gather: a send's CPU hardly depends on its size (docs/redirector.md).
                await self._pause(self._linger_s)
            self._wakeup.clear()
            try:
                if self.spooling:
                    await self.kafka.send([])  # is Kafka back? (even with nothing to send)
                await self._ship()
            except DependencyError as exc:
                self._m.producer_errors.inc()
                self._not_shipping(str(exc))
                if closing.is_set():
                    return
                await self._pause(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                self._wakeup.set()
                continue
            failures = 0
            if self.spooling:
                self.spooling = False
                log.info("click log ships to kafka again")
            if closing.is_set():
                return

    async def _pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if `stop()` begins."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def _ship(self) -> None:
        """Send the log from the checkpoint to its end, checkpointing after each send."""
        clicks = self.log
        at = clicks.shipped
        while True:
            records, after = await clicks.read(at)
            if records:
                await self.kafka.send(records)
                self._m.sent.inc(len(records))
            if after == at:
                return
            clicks.checkpoint(after)
            at = after
