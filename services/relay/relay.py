"""The webhook relay: the reference downstream subscriber of `clicks.v1`.

Its own consumer group (`RELAY_GROUP`) reads the click topic in batches. Per batch: decode (a
record we cannot read is skipped and counted: the counter dead-letters it), keep human clicks,
look up the enabled endpoints of their organisations, and hand each endpoint's lane its own
organisation's events, at most `WEBHOOK_BATCH_MAX` per POST (`lanes`: one queue and task per
endpoint, its posts in offset order, so a slow endpoint delays only its own deliveries). A
delivery that fails every retry goes to `WEBHOOK_DLQ_TOPIC` (the exact body, with endpoint,
organisation, message id and reason in headers; never the secret or the URL). A batch's offsets
are committed once its deliveries and those of every batch before it have ended, so a crash
re-sends what was not: delivery is at least once, and receivers deduplicate by `event_id` (or by
`webhook-id`).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry

from services.relay import endpoints
from services.relay.delivery import Deliverer, Outcome, message_id, payload
from services.relay.endpoints import Endpoint
from services.relay.lanes import Lanes
from shared import db, events
from shared.consume import ConsumerLoop
from shared.errors import EventError
from shared.kafka import dead_letter_producer, errors, start_with_retries
from shared.metrics import counters
from shared.settings import Settings

log = logging.getLogger(__name__)

BATCH_MAX_RECORDS = 500
STOP_TIMEOUT_S = 30.0
DRAIN_S = 10.0
"""How long a stopping relay lets its lanes finish what they hold, seconds."""
WAIT_MS = 200
"""Longest wait for a batch, milliseconds (then the loop looks whether it should stop)."""

Batches = dict[TopicPartition, list[ConsumerRecord]]


class RelayMetrics:
    """Counters of the relay, on its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        count = counters(registry)
        self.delivered = count("webhook_events_delivered", "Events posted and acknowledged")
        self.requests = count("webhook_requests", "Webhook POSTs by result (ok, failed)", "result")
        self.dead_lettered = count("webhook_dead_lettered", "Events no retry could deliver")
        self.unreadable = count("webhook_records_unreadable", "Records skipped: not readable")


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a started relay works with."""

    pool: asyncpg.Pool
    consumer: AIOKafkaConsumer
    dlq: AIOKafkaProducer
    deliverer: Deliverer
    lanes: Lanes


class Relay:
    """Consumer-group member that posts organisations' clicks to their webhook endpoints.

    `start()` connects and starts the loop; `stop()` lets the batch in hand finish (up to
    30 s, then cancels it: that batch is sent again after a restart) and closes everything.
    """

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry or CollectorRegistry()
        self.metrics = RelayMetrics(self.registry)
        self._secrets = endpoints.secrets_sealer(settings.relay.webhook_secret_key)
        self._stack = AsyncExitStack()
        self._loop: ConsumerLoop | None = None
        self._parts: _Parts | None = None

    async def start(self) -> None:
        s = self.settings
        try:
            pool = await self._stack.enter_async_context(db.pool(s.postgres, max_size=2))
            deliverer = await self._stack.enter_async_context(
                Deliverer(
                    max_attempts=s.relay.webhook_max_attempts,
                    backoff_s=s.relay.webhook_backoff_ms / 1000,
                    timeout_s=s.relay.webhook_timeout_ms / 1000,
                    allow_insecure=s.relay.webhook_allow_insecure,
                )
            )
            dlq = await dead_letter_producer(
                self._stack,
                s.kafka,
                "webhook DLQ producer",
                [s.kafka.clicks_topic, s.relay.webhook_dlq_topic],
            )
            consumer = AIOKafkaConsumer(
                s.kafka.clicks_topic,
                bootstrap_servers=s.kafka.bootstrap_servers,
                group_id=s.relay.group,
                enable_auto_commit=False,
                auto_offset_reset=s.relay.start_from,
                isolation_level="read_committed",
            )
            await start_with_retries(consumer.start, "relay consumer", s.kafka.bootstrap_servers)
            self._stack.push_async_callback(consumer.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        lanes = Lanes(partial(self._send, dlq, deliverer), partial(self._park, dlq))
        self._stack.push_async_callback(lanes.close)
        self._parts = _Parts(pool, consumer, dlq, deliverer, lanes)
        self._loop = ConsumerLoop(
            partial(self._step, self._parts),
            partial(self._rewind, self._parts),
            name="relay-loop",
            drain=partial(self._drain, self._parts),
            stop_timeout_s=STOP_TIMEOUT_S,
        )
        self._loop.start()

    @property
    def _consumer(self) -> AIOKafkaConsumer | None:
        """The started consumer (tests read its committed offsets), or None."""
        return self._parts.consumer if self._parts is not None else None

    @property
    def alive(self) -> bool:
        """True while the consume loop runs."""
        return self._loop is not None and self._loop.alive

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
        await self._stack.aclose()

    async def _rewind(self, parts: _Parts, failure: BaseException) -> None:
        # Nothing after the committed offsets counts as sent: the lanes start afresh and what
        # they held is read again.
        await parts.lanes.close()
        consumer = parts.consumer
        with errors("rewinding the relay", self.settings.kafka.bootstrap_servers):
            for tp in consumer.assignment():
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)

    async def _step(self, parts: _Parts) -> None:
        """Commit what the lanes finished, read the next batch (waiting `WAIT_MS` at most) and
        hand it to the lanes."""
        lanes = parts.lanes
        if lanes.failure is not None:
            raise lanes.failure
        await self._commit(parts)
        await lanes.wait_for_room(WAIT_MS / 1000)
        servers = self.settings.kafka.bootstrap_servers
        with errors("reading clicks", servers):
            batches: Batches = await parts.consumer.getmany(
                timeout_ms=WAIT_MS, max_records=BATCH_MAX_RECORDS
            )
        if batches:
            await self._process(parts, batches)
            await self._commit(parts)

    async def _commit(self, parts: _Parts) -> None:
        ready = parts.lanes.committable()
        if ready:
            with errors("committing offsets", self.settings.kafka.bootstrap_servers):
                await parts.consumer.commit(ready)

    async def _drain(self, parts: _Parts) -> None:
        """When the loop ends: let the lanes finish what they hold (briefly), commit that."""
        if parts.lanes.failure is None:
            await parts.lanes.settle(DRAIN_S)
            await self._commit(parts)

    async def _process(self, parts: _Parts, batches: Batches) -> None:
        clicks: list[events.ClickEvent] = []
        for records in batches.values():
            for record in records:
                try:
                    event = events.decode(record.value)
                except EventError:
                    self.metrics.unreadable.inc()
                    continue
                if not event.is_bot:
                    clicks.append(event)
        deliveries: list[tuple[Endpoint, list[events.ClickEvent]]] = []
        if clicks:
            with db.errors("Postgres did not answer: the batch is read again"):
                orgs = {e.org_id for e in clicks}
                targets = await endpoints.of_orgs(parts.pool, orgs, self._secrets)
            per_endpoint: dict[int, tuple[Endpoint, list[events.ClickEvent]]] = {}
            for event in clicks:
                for endpoint in targets.get(event.org_id, ()):
                    per_endpoint.setdefault(endpoint.id, (endpoint, []))[1].append(event)
            size = self.settings.relay.webhook_batch_max
            for endpoint, evs in per_endpoint.values():
                deliveries += [(endpoint, evs[i : i + size]) for i in range(0, len(evs), size)]
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        await parts.lanes.add_batch(offsets, deliveries)

    async def _send(
        self,
        dlq: AIOKafkaProducer,
        deliverer: Deliverer,
        endpoint: Endpoint,
        chunk: list[events.ClickEvent],
    ) -> None:
        """Deliver one chunk (in its endpoint's lane), or dead-letter it after its retries."""
        outcome = await deliverer.deliver(endpoint, chunk)
        self.metrics.requests.labels("failed").inc(outcome.attempts - outcome.delivered)
        if outcome.delivered:
            self.metrics.requests.labels("ok").inc()
            self.metrics.delivered.inc(len(chunk))
        else:
            await self._dead_letter(dlq, endpoint, outcome, len(chunk))

    async def _park(
        self, dlq: AIOKafkaProducer, endpoint: Endpoint, chunk: list[events.ClickEvent]
    ) -> None:
        """Dead-letter a chunk at once: its endpoint's lane is full (it is slow or down)."""
        outcome = Outcome(
            False, 0, "endpoint backlog full", message_id(endpoint, chunk), payload(chunk)
        )
        await self._dead_letter(dlq, endpoint, outcome, len(chunk))

    async def _dead_letter(
        self, dlq: AIOKafkaProducer, endpoint: Endpoint, outcome: Outcome, count: int
    ) -> None:
        reason = outcome.error or "unknown"
        headers = [
            ("endpoint_id", str(endpoint.id).encode()),
            ("org_id", str(endpoint.org_id).encode()),
            ("webhook_id", outcome.msg_id.encode()),
            ("attempts", str(outcome.attempts).encode()),
            ("reason", reason.encode()),
        ]
        with errors("dead-lettering a delivery", self.settings.kafka.bootstrap_servers):
            await dlq.send_and_wait(
                self.settings.relay.webhook_dlq_topic,
                value=outcome.body,
                key=str(endpoint.id).encode(),
                headers=headers,
            )
        self.metrics.dead_lettered.inc(count)
        log.warning(
            "webhook delivery dead-lettered",
            extra={
                "endpoint_id": endpoint.id,
                "org_id": endpoint.org_id,
                "webhook_id": outcome.msg_id,
                "attempts": outcome.attempts,
                "reason": reason,
            },
        )
