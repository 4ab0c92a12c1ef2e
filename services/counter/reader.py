"""Reading the counter's next batch from Kafka: filled up to a size within a wait, each record
admitted as a `Click` or refused with its reason (`intake.admit`, then `owners.LinkOwners`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.counter.intake import Click, admit
from services.counter.owners import LinkOwners
from shared import kafka
from shared.errors import EventError
from shared.settings import Settings

LOG_APPEND_TIME = 1
"""`ConsumerRecord.timestamp_type` of a record stamped by the broker (`LogAppendTime`)."""


@dataclass(frozen=True, slots=True)
class Read:
    """A batch read from Kafka, per partition: the records, and each one admitted or refused."""

    records: dict[TopicPartition, list[ConsumerRecord]]
    clicks: dict[TopicPartition, list[Click]]
    refused: dict[TopicPartition, list[tuple[ConsumerRecord, str]]]


class Reader:
    """Reads batches through the counter's consumer until `stopping` is set."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        settings: Settings,
        stopping: asyncio.Event,
        owners: LinkOwners,
    ) -> None:
        self._consumer = consumer
        self._settings = settings
        self._stopping = stopping
        self._owners = owners

    async def read(self) -> Read:
        """The next batch, each record admitted (a `Click`) or refused with its reason."""
        batches = await self._fetch_batch()
        read = Read(batches, {}, {})
        limit = self._settings.counter.event_max_bytes
        keep_days = self._settings.counter.dedup_retention_days
        now = datetime.now(UTC)
        admitted: list[tuple[TopicPartition, ConsumerRecord, Click]] = []
        for tp, records in batches.items():
            refused: list[tuple[ConsumerRecord, str]] = []
            for record in records:
                stamped = record.timestamp_type == LOG_APPEND_TIME
                try:
                    click = admit(
                        record.value,
                        max_bytes=limit,
                        now=now,
                        arrival_ms=record.timestamp if stamped else None,
                        keep_days=keep_days,
                    )
                except EventError as exc:
                    refused.append((record, str(exc)))
                else:
                    admitted.append((tp, record, click))
            read.clicks[tp], read.refused[tp] = [], refused
        reasons = await self._owners.refusals([click for _, _, click in admitted])
        for (tp, record, click), reason in zip(admitted, reasons, strict=True):
            if reason is None:
                read.clicks[tp].append(click)
            else:
                read.refused[tp].append((record, reason))
        for refused in read.refused.values():
            refused.sort(key=lambda item: item[0].offset)
        return read

    async def _fetch_batch(self) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to `COUNTER_BATCH_MAX_RECORDS` records, waiting at most `COUNTER_BATCH_WAIT_MS` to
        fill the batch: `getmany` alone returns whatever one fetch brought, often a few hundred
        records, and each batch costs one transaction."""
        s = self._settings
        deadline = time.monotonic() + s.counter.batch_wait_ms / 1000
        merged: dict[TopicPartition, list[ConsumerRecord]] = {}
        count = 0
        while count < s.counter.batch_max_records and not self._stopping.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            with kafka.errors("reading clicks", s.kafka.bootstrap_servers):
                got = await self._consumer.getmany(
                    timeout_ms=max(0, left_ms), max_records=s.counter.batch_max_records - count
                )
            for tp, records in got.items():
                merged.setdefault(tp, []).extend(records)
                count += len(records)
            if left_ms <= 0:
                break
        return merged
