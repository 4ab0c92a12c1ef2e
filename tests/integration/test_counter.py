"""The counter against real Kafka, Postgres and Redis: exact counts, duplicates, poison, restart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter import store
from services.counter.counter import Counter
from shared import events
from shared.counts import Counts, CountStore
from shared.settings import Settings
from tests.helpers import pg_counts, read_topic, redis_counts, wait_for
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def producer(settings: Settings, topics: list[str]) -> AsyncIterator[AIOKafkaProducer]:
    created = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await created.start()
    yield created
    await created.stop()


async def send(producer: AIOKafkaProducer, topic: str, *values: bytes) -> None:
    for value in values:
        await producer.send_and_wait(topic, value=value, key=b"k")


def click(link_id: int, visitor: str, *, bot: bool = False) -> events.ClickEvent:
    return make_event(link_id=link_id, visitor_id=visitor, is_bot=bot)


async def test_redelivered_events_count_once(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    a, b, bot = click(1, "v:a"), click(1, "v:b"), click(1, "v:crawler", bot=True)
    await send(producer, settings.clicks_topic, *(events.encode(e) for e in (a, a, b, a, bot)))
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 1), (2, 2, 1)) == (2, 2, 1)
        assert await redis_counts(CountStore(redis), 1) == (2, 2, 1)
        total = await wait_for(
            lambda: _offsets_total(pool, settings), 5
        )  # every record moved the stored offsets
        assert total == 5
        assert counter.registry.get_sample_value("clicktrack_events_duplicate_total") == 2
    finally:
        await counter.stop()


async def test_poison_goes_to_the_dlq_and_counting_goes_on(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    garbage = b"\x00not json"
    wrong_type = events.encode(click(2, "v:x")).replace(b'"link_id":2', b'"link_id":"2"')
    await send(
        producer,
        settings.clicks_topic,
        events.encode(click(2, "v:a")),
        garbage,
        wrong_type,
        events.encode(click(2, "v:a")),
    )
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 2), (2, 1, 0)) == (2, 1, 0)
        dead = await read_topic(settings, settings.dlq_topic, 2)
        assert sorted(r.value for r in dead) == sorted([garbage, wrong_type])
        reasons = {r.value: dict(r.headers)["reason"] for r in dead}
        assert reasons[garbage].startswith(b"value is not JSON")
        assert reasons[wrong_type] == b"field 'link_id' has type str"
        assert all(dict(r.headers)["source_topic"] == settings.clicks_topic.encode() for r in dead)
        assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 2
    finally:
        await counter.stop()


async def test_a_restarted_counter_resumes_from_the_stored_offsets(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    first = [click(3, f"v:{i}") for i in range(30)]
    await send(producer, settings.clicks_topic, *(events.encode(e) for e in first))
    counter = Counter(settings)
    await counter.start()
    assert await wait_for(lambda: pg_counts(pool, 3), (30, 30, 0)) == (30, 30, 0)
    await counter.stop()

    # visitors 0..9 come back, 10 new ones arrive, and one old event is delivered again
    second = [click(3, f"v:{i}") for i in range(10)] + [click(3, f"v:new{i}") for i in range(10)]
    await send(producer, settings.clicks_topic, *(events.encode(e) for e in [*second, first[0]]))
    again = Counter(settings)
    await again.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 3), (50, 40, 0)) == (50, 40, 0)
        assert await wait_for(lambda: redis_counts(CountStore(redis), 3), (50, 40, 0)) == (
            50,
            40,
            0,
        )
        # it re-read the last stored batch (30 records, to write Redis again) and the 21 new ones
        assert again.registry.get_sample_value("clicktrack_events_consumed_total") == 51
        assert again.registry.get_sample_value("clicktrack_events_counted_total") == 20
        assert again.registry.get_sample_value("clicktrack_events_duplicate_total") == 31
    finally:
        await again.stop()


async def test_redis_counters_never_move_backwards(redis: aioredis.Redis) -> None:
    counts = CountStore(redis)
    await counts.mark_complete("test")
    await counts.raise_to([Counts("link", 9, 10, 4, 1)])
    await counts.raise_to([Counts("link", 9, 7, 5, 0)])  # a late writer with an older total
    assert await redis_counts(counts, 9) == (10, 5, 1)


async def test_migrations_are_idempotent(settings: Settings, pool: asyncpg.Pool) -> None:
    from shared import db

    async with pool.acquire() as conn:
        assert await db.migrate(conn, settings.postgres_schema) == []
    assert await store.stored_offsets(pool, "nobody", "nothing") == {}


async def _offsets_total(pool: asyncpg.Pool, settings: Settings) -> int:
    offsets = await store.stored_offsets(pool, settings.counter_group, settings.clicks_topic)
    return sum(offsets.values())
