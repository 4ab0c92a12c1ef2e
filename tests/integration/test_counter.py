"""The counter against real Kafka, Postgres and Redis: exact counts, duplicates, poison, restart."""

from __future__ import annotations

import asyncio

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as Metric

from services.cli.main import cli
from services.counter import retention, store
from services.counter.app import create_app
from services.counter.counter import Counter
from services.counter.intake import admit
from services.counter.offsets import stored_offsets
from services.counter.rebuild import Healer
from shared import events
from shared.counts import MARKER_KEY, Counts, CountStore
from shared.errors import DependencyError
from shared.settings import Secret, Settings
from tests.helpers import (
    Forwarder,
    counts_in_both,
    pg_counts,
    read_topic,
    redis_counts,
    seed_links,
    wait_for,
)
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration


async def send(producer: AIOKafkaProducer, topic: str, *values: bytes | None) -> None:
    for value in values:
        await producer.send_and_wait(topic, value=value, key=b"k")


def click(link_id: int, visitor: str, *, bot: bool = False) -> events.ClickEvent:
    return make_event(link_id=link_id, visitor_id=visitor, is_bot=bot)


@pytest.fixture(autouse=True)
async def links(pool: asyncpg.Pool) -> None:
    """Links 1..40 of `make_event`'s organisation and campaign: the counter counts only clicks
    on links that are what they claim."""
    await seed_links(pool, [make_event(link_id=i) for i in range(1, 41)])


async def test_redelivered_events_count_once(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    a, b, bot = click(1, "v:a"), click(1, "v:b"), click(1, "v:crawler", bot=True)
    await send(
        producer, settings.kafka.clicks_topic, *(events.encode(e) for e in (a, a, b, a, bot))
    )
    counter = Counter(settings)
    await counter.start()
    try:
        assert await counts_in_both(pool, CountStore(redis), 1, (2, 2, 1)) == ((2, 2, 1),) * 2
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
        settings.kafka.clicks_topic,
        events.encode(click(2, "v:a")),
        garbage,
        wrong_type,
        events.encode(click(2, "v:a")),
    )
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 2), (2, 1, 0)) == (2, 1, 0)
        dead = await read_topic(settings, settings.kafka.dlq_topic, 2)
        assert sorted(r.value for r in dead) == sorted([garbage, wrong_type])
        reasons = {r.value: dict(r.headers)["reason"] for r in dead}
        assert reasons[garbage].startswith(b"value is not JSON")
        assert reasons[wrong_type] == b"field 'link_id' has type str"
        assert all(
            dict(r.headers)["source_topic"] == settings.kafka.clicks_topic.encode() for r in dead
        )
        assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 2
    finally:
        await counter.stop()


async def test_many_small_batches_count_exactly_with_two_in_flight(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    producer: AIOKafkaProducer,
) -> None:
    clicks = [click(5, f"v:{i % 300}") for i in range(1_500)]  # 300 visitors, 5 clicks each
    bots = [click(5, f"v:bot{i % 7}", bot=True) for i in range(40)]
    values = [events.encode(e) for e in [*clicks, *bots, *clicks[:200]]]  # 200 delivered twice
    sent = [await producer.send(settings.kafka.clicks_topic, value=v, key=b"k") for v in values]
    await asyncio.gather(*sent)
    counter = Counter(settings.changed(COUNTER_BATCH_MAX_RECORDS=100))
    await counter.start()
    try:
        counted = await counts_in_both(pool, CountStore(redis), 5, (1_500, 300, 40))
        assert counted == ((1_500, 300, 40),) * 2
        assert await wait_for(lambda: _offsets_total(pool, settings), 1_740) == 1_740
        assert counter.registry.get_sample_value("clicktrack_events_counted_total") == 1_540
        assert counter.registry.get_sample_value("clicktrack_events_duplicate_total") == 200
        assert counter.registry.get_sample_value("clicktrack_batch_records_count") >= 18
    finally:
        await counter.stop()


async def test_a_restarted_counter_resumes_from_the_stored_offsets(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    first = [click(3, f"v:{i}") for i in range(30)]
    await send(producer, settings.kafka.clicks_topic, *(events.encode(e) for e in first))
    counter = Counter(settings)
    await counter.start()
    assert await wait_for(lambda: pg_counts(pool, 3), (30, 30, 0)) == (30, 30, 0)
    await counter.stop()

    # visitors 0..9 come back, 10 new ones arrive, and one old event is delivered again
    second = [click(3, f"v:{i}") for i in range(10)] + [click(3, f"v:new{i}") for i in range(10)]
    await send(
        producer, settings.kafka.clicks_topic, *(events.encode(e) for e in [*second, first[0]])
    )
    again = Counter(settings)
    await again.start()
    try:
        assert await counts_in_both(pool, CountStore(redis), 3, (50, 40, 0)) == ((50, 40, 0),) * 2
        # it re-read the last stored batch (30 records, to write Redis again) and the 21 new ones
        assert again.registry.get_sample_value("clicktrack_events_consumed_total") == 51
        assert again.registry.get_sample_value("clicktrack_events_counted_total") == 20
        assert again.registry.get_sample_value("clicktrack_events_duplicate_total") == 31
    finally:
        await again.stop()


async def test_a_failed_batch_keeps_the_batch_after_it_from_storing_offsets(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """Two batches are in flight: the second counts while the first finishes. When the first
    fails, the second must not store its offsets (that would skip the first one's clicks after
    the retry); both are read again from the stored offsets and every click counts once."""
    await pool.execute(
        """
        CREATE SEQUENCE boom;
        CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            -- the first statement to insert v:boom fails, a second after the batches behind it
            IF NEW.visitor_id = 'v:boom' AND nextval('boom') = 1 THEN
                PERFORM pg_sleep(1);
                RAISE EXCEPTION 'boom';
            END IF;
            RETURN NEW;
        END
        $$;
        CREATE TRIGGER boom BEFORE INSERT ON link_visitors
            FOR EACH ROW EXECUTE FUNCTION boom();
        """
    )
    clicks = [click(31, "v:boom" if i == 150 else f"v:{i}") for i in range(600)]
    for event in clicks:  # one partition (one key), in batches of 100 below
        await producer.send(settings.kafka.clicks_topic, value=events.encode(event), key=b"k")
    await producer.flush()
    counter = Counter(settings.changed(COUNTER_BATCH_MAX_RECORDS=100))
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 31), (600, 600, 0)) == (600, 600, 0)
        assert await wait_for(lambda: _offsets_total(pool, settings), 600) == 600
        assert counter.registry.get_sample_value("clicktrack_batch_failures_total") == 1
        # the batch after the failed one had counted its 100 clicks: read again, they are
        # duplicates, and so is the last batch stored (re-read from its first offset)
        assert counter.registry.get_sample_value("clicktrack_events_counted_total") == 600
        assert counter.registry.get_sample_value("clicktrack_events_duplicate_total") == 200
    finally:
        await counter.stop()


async def test_redis_counters_never_move_backwards(redis: aioredis.Redis) -> None:
    counts = CountStore(redis)
    await counts.mark_complete("test")
    await counts.raise_to([Counts("link", 9, 10, 4, 1)])
    await counts.raise_to([Counts("link", 9, 7, 5, 0)])  # a late writer with an older total
    assert await redis_counts(counts, 9) == (10, 5, 1)


async def test_migrations_are_idempotent(settings: Settings, pool: asyncpg.Pool) -> None:
    from shared import db

    async with pool.acquire() as conn:
        assert await db.migrate(conn, settings.postgres.schema) == []
    assert await stored_offsets(pool, "nobody", "nothing") == {}


async def _offsets_total(pool: asyncpg.Pool, settings: Settings) -> int:
    offsets = await stored_offsets(pool, settings.counter.group, settings.kafka.clicks_topic)
    return sum(offsets.values())


async def test_every_kind_of_poison_is_dead_lettered_and_counting_goes_on(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    good = events.encode(click(4, "v:a"))
    as_dict = orjson.loads(good)
    missing = orjson.dumps({k: v for k, v in as_dict.items() if k != "visitor_id"})
    not_a_date = orjson.dumps({**as_dict, "occurred_at": "yesterday"})
    huge = orjson.dumps({**as_dict, "padding": "x" * 100_000})  # valid, but over 64 KiB
    giant = b"[" + b"1," * 470_000 + b"1]"  # 940 kB: re-produced cut to 900,000 bytes
    array = b"[1, 2, 3]"
    poison: list[bytes | None] = [missing, not_a_date, huge, giant, array, b"", None]
    await send(producer, settings.kafka.clicks_topic, good, *poison, events.encode(click(4, "v:b")))
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 4), (2, 2, 0)) == (2, 2, 0)
        dead = await read_topic(settings, settings.kafka.dlq_topic, len(poison))
        assert len(dead) == len(poison)
        by_offset = {int(dict(r.headers)["source_offset"]): r for r in dead}
        assert sorted(by_offset) == list(range(1, 1 + len(poison)))
        reasons = {o: dict(r.headers)["reason"].decode() for o, r in by_offset.items()}
        assert reasons[1] == "field 'visitor_id' is missing"
        assert reasons[2] == "occurred_at 'yesterday' is not ISO 8601"
        assert reasons[3] == f"record is {len(huge)} bytes, over the 65536-byte limit"
        assert reasons[4] == f"record is {len(giant)} bytes, over the 65536-byte limit"
        assert reasons[5] == "value is JSON list, expected an object"
        assert reasons[6].startswith("value is not JSON")
        assert reasons[7] == "record has no value"  # a tombstone
        for offset, original in enumerate(poison, start=1):
            record = by_offset[offset]
            if original is giant:
                assert record.value == giant[:900_000]
                assert dict(record.headers)["truncated"] == b"true"
                assert dict(record.headers)["original_bytes"] == str(len(giant)).encode()
            else:
                assert record.value == original
            assert record.key == b"k"
            assert dict(record.headers)["source_partition"] == str(record.partition).encode()
        assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 7
        assert await wait_for(lambda: redis_counts(CountStore(redis), 4), (2, 2, 0)) == (2, 2, 0)
    finally:
        await counter.stop()


async def test_a_batch_committed_without_its_redis_write_is_written_on_restart(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """A crash between the Postgres commit and the Redis write: the restarted counter re-reads
    the last stored batch and writes Redis, though no new click arrives."""
    clicks = [click(8, f"v:{i % 3}") for i in range(6)]
    await send(producer, settings.kafka.clicks_topic, *(events.encode(c) for c in clicks))
    store_only = [
        admit(r.value, max_bytes=65_536)
        for r in await read_topic(settings, settings.kafka.clicks_topic, 6)
    ]
    async with pool.acquire() as conn:
        await retention.ensure_partitions(conn, {c.day for c in store_only})
        await store.apply_batch(
            conn,
            group=settings.counter.group,
            topic=settings.kafka.clicks_topic,
            clicks=store_only,
            offsets={0: (0, 6)},
        )
    counts = CountStore(redis)
    await counts.mark_complete("test")  # Redis is whole: no rebuild will paper over the gap
    assert await redis_counts(counts, 8) == (0, 0, 0)
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: redis_counts(counts, 8), (6, 3, 0)) == (6, 3, 0)
        assert await pg_counts(pool, 8) == (6, 3, 0)
        assert counter.registry.get_sample_value("clicktrack_events_duplicate_total") == 6
        assert counter.registry.get_sample_value("clicktrack_redis_rebuilds_total") == 0
    finally:
        await counter.stop()


async def count_three_clicks_of_link_9(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """Three clicks of two visitors on link 9, counted by a counter that then stops."""
    await send(
        producer,
        settings.kafka.clicks_topic,
        *(events.encode(click(9, v)) for v in ("v:a", "v:a", "v:b")),
    )
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 9), (3, 2, 0)) == (3, 2, 0)
    finally:
        await counter.stop()


async def test_a_redis_restarted_since_its_marker_was_set_is_rebuilt(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """A Redis that restarted (from its append-only file, a snapshot, a failover) keeps the
    marker but may have lost its last writes: the marker names the Redis process that set it
    (its run_id), and a marker of another process is no marker."""
    await count_three_clicks_of_link_9(settings, pool, producer)
    store = CountStore(redis)
    assert await store.is_complete()
    # as a restart leaves it: the marker of the process before, a counter behind Postgres
    await redis.set(MARKER_KEY, "2026-12-01T00:00:00.000Z " + "0" * 40)
    await redis.hset("ct:link:9", mapping={"total": 1, "unique": 1, "bots": 0})
    assert not await store.is_complete()
    rebuilds = Metric("rebuilds", "Rebuilds", registry=CollectorRegistry())
    await Healer(pool, store, rebuilds).check()
    assert await redis_counts(store, 9) == (3, 2, 0)
    assert await store.is_complete()
    assert rebuilds._value.get() == 1  # type: ignore[attr-defined]


async def test_counters_rebuild_command_restores_redis_from_postgres(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    await count_three_clicks_of_link_9(settings, pool, producer)
    await redis.hset("ct:link:9", mapping={"total": 99, "unique": 99, "bots": 99})
    await redis.delete("ct:campaign:11")
    await redis.set("ct:code:AbC123xYz9", "cached")  # the redirector's cache is not ours to drop
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "REDIS_URL": settings.redis.url.reveal(),
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
    }
    # the command runs its own event loop: give it a thread of its own
    plain = await asyncio.to_thread(CliRunner().invoke, cli, ["counters", "rebuild"], env=env)
    assert plain.exit_code == 0, plain.output
    # set-if-greater never lowers: 99 stays; the deleted campaign counter is back
    assert await redis_counts(CountStore(redis), 9) == (99, 99, 99)
    campaign = await CountStore(redis).get_counts("campaign", 11)
    assert campaign == Counts("campaign", 11, 3, 2, 0)
    reset = await asyncio.to_thread(
        CliRunner().invoke, cli, ["counters", "rebuild", "--reset"], env=env
    )
    assert reset.exit_code == 0, reset.output
    assert "rebuilt 4 counters from postgres" in reset.output
    assert await redis_counts(CountStore(redis), 9) == (3, 2, 0)
    assert await redis.get("ct:code:AbC123xYz9") == b"cached"
    assert await CountStore(redis).is_complete()


async def test_readyz_and_metrics_report_dependencies_and_lag(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    await send(
        producer, settings.kafka.clicks_topic, *(events.encode(click(12, "v:a")) for _ in range(3))
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        assert await wait_for(lambda: pg_counts(pool, 12), (3, 1, 0)) == (3, 1, 0)
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert await ready.json() == {"status": "ok", "postgres": True, "redis": True}
        text = await wait_for(lambda: _metrics_with_lag(client), "lag reported", seconds=10)
        assert text == "lag reported"
        body = await (await client.get("/metrics")).text()
        assert "clicktrack_batch_records_count" in body
        assert "clicktrack_click_to_count_seconds_count 1.0" in body
    finally:
        await client.close()


async def test_readyz_names_the_dependency_that_went_away(
    settings: Settings, topics: list[str]
) -> None:
    host_port, _, db = settings.redis.url.reveal().removeprefix("redis://").partition("/")
    redis = Forwarder(host_port)
    await redis.start()
    through = settings.changed(REDIS_URL=Secret(f"redis://{redis.address}/{db}"))
    client = TestClient(TestServer(create_app(through)))
    await client.start_server()
    try:
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (
            200,
            {"status": "ok", "postgres": True, "redis": True},
        )
        await redis.close()  # Redis goes away
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (
            503,
            {"status": "degraded", "postgres": True, "redis": False},
        )
    finally:
        await client.close()


async def _metrics_with_lag(client: TestClient) -> str:
    body = await (await client.get("/metrics")).text()
    lines = [line for line in body.splitlines() if line.startswith("clicktrack_consumer_lag{")]
    # key b"k" puts the three records in one partition: it reads 0 once they are counted
    return "lag reported" if lines and all(line.endswith(" 0.0") for line in lines) else body


async def test_a_counter_without_its_topic_says_so_at_start(
    settings: Settings, topics: list[str]
) -> None:
    # auto-creation is off: subscribed to a missing topic, aiokafka's start() would wait for ever
    missing = settings.changed(CLICKS_TOPIC=f"{settings.kafka.clicks_topic}.missing")
    counter = Counter(missing)
    with pytest.raises(DependencyError) as raised:
        await asyncio.wait_for(counter.start(), 30)
    assert str(raised.value) == (
        f"Kafka at {settings.kafka.bootstrap_servers} has no topic {missing.kafka.clicks_topic}: "
        "create the topics with `clicktrack topics`"
    )
