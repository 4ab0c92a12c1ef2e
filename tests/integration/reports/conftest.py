"""Fixtures of the reports tests: a producer on the test's topic, and a counted world."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_client import ApiClient
from tests.integration.reports.world import World, build_world, counted_total, publish


@pytest.fixture
async def world(
    api: ApiClient,
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    producer: AIOKafkaProducer,
) -> AsyncIterator[World]:
    """The world of `reports.world`, every click counted by a running counter."""
    built, clicks = await build_world(api)
    await publish(producer, settings.kafka.clicks_topic, clicks)
    # Some tests count clicks of fixed dates (a DST change in October): the counter refuses
    # clicks older than its deduplication window, so this one keeps a long window (and keeps
    # visitor rows longer still: the period must exceed the window).
    counter = Counter(settings.changed(DEDUP_RETENTION_DAYS=400, VISITOR_RETENTION_DAYS=800))
    await counter.start()
    try:
        assert await wait_for(lambda: counted_total(pool, built.org_id), built.clicks) == 10
        yield built
    finally:
        await counter.stop()
