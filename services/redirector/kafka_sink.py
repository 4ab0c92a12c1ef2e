"""Sends click records to Kafka in per-partition batches, each call bounded in time.

aiokafka has no `max.block.ms`: `send()` may wait for metadata or buffer space for as long as
`request_timeout_ms`. So every call here runs under our own timeout, and a producer that failed
once is abandoned, not reused: its in-flight batches are failed at once (their records are
already on their way to the spool), and the next call starts a fresh idempotent producer (new
producer id, sequence numbers from zero) instead of inheriting a broken sequence.

Records go through aiokafka's batch API (`create_batch` / `send_batch`): one builder per
partition instead of one accumulator call per record. Partitions are chosen with the default
murmur2 partitioner over all partitions, as `send()` and the Java client do for a keyed record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from shared.errors import DependencyError
from shared.kafka import abandon_producer, errors
from shared.settings import Settings

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]

MAX_BATCH_BYTES = 512 * 1024
LINGER_MS = 5
COMPRESSION = "zstd"
"""zstd: on click events it compresses better than lz4 and for less CPU (docs/redirector.md)."""


@lru_cache(maxsize=65_536)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a keyed record among `partitions` (Kafka's default partitioner)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class KafkaSink:
    """One idempotent producer (acks=all) for the clicks topic, replaced after any failure."""

    def __init__(self, settings: Settings) -> None:
        self._servers = settings.kafka.bootstrap_servers
        self._topic = settings.kafka.clicks_topic
        self._timeout_s = settings.redirector.publish_send_timeout_ms / 1000
        self._producer: Any = None
        self._connecting = asyncio.Lock()  # the sender and the replay may both need a producer

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def send(self, records: Sequence[Record]) -> None:
        """Deliver `records`; raises `DependencyError` if Kafka does not acknowledge all of them
        within the send timeout (some may have been written: delivery is at least once)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                with errors("taking a batch of clicks", self._servers):
                    producer = self._producer or await self._connect()
                    futures = await self._enqueue(producer, records)
                results = await asyncio.gather(*futures, return_exceptions=True)
        except (DependencyError, TimeoutError) as exc:
            await self._abandon()
            if isinstance(exc, DependencyError):
                raise
            raise DependencyError(
                f"Kafka at {self._servers} did not take the batch in time: {exc!r}"
            ) from exc
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self._abandon()
            raise DependencyError(f"Kafka refused {len(failed)} batches: {failed[0]!r}")

    async def close(self) -> None:
        """Flush and stop the producer (bounded by the send timeout). Safe to call twice."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await producer.stop()
        except TimeoutError:
            await abandon_producer(producer)

    async def _connect(self) -> Any:
        async with self._connecting:
            if self._producer is not None:
                return self._producer
            return await self._start_producer()

    async def _start_producer(self) -> Any:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=LINGER_MS,
            compression_type=COMPRESSION,
            max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=int(self._timeout_s * 1000),
            retry_backoff_ms=100,
        )
        try:
            await producer.start()
        except BaseException:
            await abandon_producer(producer)
            raise
        self._producer = producer
        log.info("kafka producer connected", extra={"servers": self._servers})
        return producer

    async def _enqueue(self, producer: Any, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        count = len(await producer.partitions_for(self._topic))
        by_partition: dict[int, list[Record]] = {}
        for record in records:
            by_partition.setdefault(partition_of(record[0], count), []).append(record)
        futures: list[asyncio.Future[Any]] = []
        for partition, part in by_partition.items():
            batch = producer.create_batch()
            for key, value in part:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(
                        await producer.send_batch(batch, self._topic, partition=partition)
                    )
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, self._topic, partition=partition))
            # Let requests in between partitions: building a batch is a burst of Python work
            # that would otherwise show up in the latency of the requests waiting behind it.
            await asyncio.sleep(0)
        return futures

    async def _abandon(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await abandon_producer(producer)
