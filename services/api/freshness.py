"""How fresh a report is: `as_of`, and how far the counter is behind the clicks topic.

The counter stores, with every batch it counts, the next offset of each partition in Postgres
(`consumer_offsets`); Kafka knows each partition's end offset. Their difference, summed, is the
number of clicks published but not yet counted. Zero means everything the redirector published
up to `as_of` is in the numbers.

Reports never wait long on Kafka: the end offsets are asked with a budget of `KAFKA_BUDGET_S`,
and after a failure Kafka is left alone for `RETRY_AFTER_S`; meanwhile the lag is `unknown` and
the report is served all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.errors import DependencyError
from shared.kafka import end_offsets, errors
from shared.settings import Settings

log = logging.getLogger(__name__)

KAFKA_BUDGET_S = 1.0
"""Longest a report waits for Kafka's end offsets, seconds."""
RETRY_AFTER_S = 10.0
"""After Kafka failed to answer, seconds before a report asks it again."""
PARTITIONS_TTL_S = 60.0
"""How long the clicks topic's partition list is reused, seconds."""


@dataclass(frozen=True, slots=True)
class Lag:
    """The counter's lag on the clicks topic when a report was made."""

    status: str
    """`current` (nothing uncounted), `behind` (records uncounted) or `unknown` (Kafka did not
    answer in time)."""
    records: int | None
    """Clicks in the topic not yet counted (summed over partitions); null when unknown."""
    last_counted_at: datetime | None
    """When the counter last stored a batch; null if never."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "records": self.records,
            "last_counted_at": self.last_counted_at,
        }


class EndOffsets:
    """Kafka end offsets of the clicks topic, through a group-less consumer (and an admin client
    for the topic's partitions, refreshed every `PARTITIONS_TTL_S`) started on first use, so the
    API starts and serves without Kafka; `close()` stops them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions: list[TopicPartition] = []
        self._partitions_at = -PARTITIONS_TTL_S
        self._failed_at = -RETRY_AFTER_S
        self._lock = asyncio.Lock()

    async def fetch(self) -> dict[int, int] | None:
        """partition -> end offset, or None when Kafka does not answer within the budget."""
        if time.monotonic() - self._failed_at < RETRY_AFTER_S:
            return None
        servers = self._settings.kafka.bootstrap_servers
        try:
            async with asyncio.timeout(KAFKA_BUDGET_S), self._lock:
                with errors("starting its clients", servers):
                    consumer = await self._started()
                    partitions = await self._topic_partitions()
                # described within PARTITIONS_TTL_S: no metadata round trips per report
                ends = await end_offsets(consumer, partitions, servers, known_to_exist=True)
                return {tp.partition: offset for tp, offset in ends.items()}
        except (DependencyError, TimeoutError) as exc:
            log.warning("kafka end offsets unavailable", extra={"error": repr(exc)})
            self._failed_at = time.monotonic()
            await self.close()
            return None

    async def _topic_partitions(self) -> list[TopicPartition]:
        if time.monotonic() - self._partitions_at < PARTITIONS_TTL_S:
            return self._partitions
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._settings.kafka.bootstrap_servers,
                request_timeout_ms=int(KAFKA_BUDGET_S * 1000),
            )
            self._admin = admin
            await admin.start()
        topic = self._settings.kafka.clicks_topic
        described = await self._admin.describe_topics([topic])
        self._partitions = [
            TopicPartition(topic, p["partition"])
            for t in described
            if t.get("topic") == topic and t.get("error_code", 0) == 0
            for p in t.get("partitions", [])
        ]
        self._partitions_at = time.monotonic()
        return self._partitions

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=int(KAFKA_BUDGET_S * 1000),
            )
            self._consumer = consumer
            await consumer.start()
        return self._consumer

    async def close(self) -> None:
        """Stop the clients, if started; safe to call twice."""
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        self._partitions_at = -PARTITIONS_TTL_S
        try:
            with errors("stopping its clients", self._settings.kafka.bootstrap_servers):
                if consumer is not None:
                    await consumer.stop()
                if admin is not None:
                    await admin.close()
        except DependencyError as exc:
            log.warning("kafka client stop failed", extra={"error": repr(exc)})


async def counter_lag(pool: asyncpg.Pool, ends: EndOffsets, settings: Settings) -> Lag:
    """The lag of the counter's group (`COUNTER_GROUP`) on the clicks topic (`CLICKS_TOPIC`)."""
    rows = await pool.fetch(
        "SELECT partition, next_offset, updated_at FROM consumer_offsets"
        " WHERE group_id = $1 AND topic = $2",
        settings.counter.group,
        settings.kafka.clicks_topic,
    )
    stored = {r["partition"]: r["next_offset"] for r in rows}
    last = max((r["updated_at"] for r in rows), default=None)
    end = await ends.fetch()
    if end is None:
        return Lag("unknown", None, last)
    behind = sum(max(0, offset - stored.get(p, 0)) for p, offset in end.items())
    return Lag("behind" if behind else "current", behind, last)
