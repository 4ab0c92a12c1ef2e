"""The dead-letter topic: records the counter cannot count, with why and where they came from.

Each dead letter carries the original key and value bytes and the headers `reason`,
`source_topic`, `source_partition` and `source_offset`. A value too big to produce again (the
broker's and producer's 1 MiB limit) is cut to `MAX_VALUE_BYTES`, flagged with the headers
`truncated` = `true` and `original_bytes`. Delivery is at least once: a crash between the send and
the batch's commit sends the same dead letter again.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter as Metric

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 900_000
"""Largest value re-produced whole, bytes; below the producer's default 1 MiB request size."""
MAX_KEY_BYTES = 10_000
"""Longest key re-produced whole, bytes."""
MAX_REASON_CHARS = 500


class DeadLetters:
    """Sends refused records to the dead-letter topic through an idempotent producer."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, sent: Metric) -> None:
        self._producer = producer
        self._topic = topic
        self._sent = sent

    async def send(self, refused: list[tuple[ConsumerRecord, str]]) -> None:
        """Send each (record, reason) and wait until Kafka has them all."""
        if not refused:
            return
        pending = [await self._send_one(record, reason) for record, reason in refused]
        await asyncio.gather(*pending)
        self._sent.inc(len(refused))

    async def _send_one(self, record: ConsumerRecord, reason: str) -> asyncio.Future[object]:
        value: bytes | None = record.value
        headers = [
            ("reason", reason[:MAX_REASON_CHARS].encode()),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        key: bytes | None = record.key
        if key is not None and len(key) > MAX_KEY_BYTES:
            headers.append(("key_truncated", b"true"))
            key = key[:MAX_KEY_BYTES]
        if value is not None and len(value) > MAX_VALUE_BYTES:
            headers += [("truncated", b"true"), ("original_bytes", str(len(value)).encode())]
            value = value[:MAX_VALUE_BYTES]
        log.warning(
            "record dead-lettered",
            extra={"partition": record.partition, "offset": record.offset, "reason": reason},
        )
        future: asyncio.Future[object] = await self._producer.send(
            self._topic, value=value, key=key, headers=headers
        )
        return future
