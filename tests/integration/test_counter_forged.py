"""Events written to the clicks topic by someone else than our redirector (no ACLs in the stack),
or by a redirector whose clock is wrong: the counter counts only what is true, at a time that
keeps it exactly once, and dead-letters the rest with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.api.window import floor_quarter
from services.counter import retention
from services.counter.counter import Counter
from shared import events
from shared.settings import Settings
from tests.helpers import pg_counts, read_topic, seed_links, wait_for
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

VICTIM = dict(link_id=101, org_id=31, campaign_id=301, campaign_kind="one_time", channel="sms")
ATTACKER = dict(link_id=102, org_id=32, campaign_id=302, campaign_kind="resend", channel="sms")


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def send(producer: AIOKafkaProducer, topic: str, *values: bytes) -> None:
    for value in values:
        await producer.send_and_wait(topic, value=value, key=b"k")


async def quarters_counted(pool: asyncpg.Pool, link_id: int) -> list[tuple[datetime, int]]:
    rows = await pool.fetch(
        "SELECT quarter, total_clicks FROM quarter_counters WHERE link_id = $1 ORDER BY quarter",
        link_id,
    )
    return [(r["quarter"], r["total_clicks"]) for r in rows]


async def test_a_click_that_lies_about_its_link_is_dead_lettered(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """Today anyone who can write to the topic can put clicks into another tenant's counts, or
    count a link that does not exist."""
    await seed_links(pool, [make_event(**VICTIM), make_event(**ATTACKER)])
    forged = {
        "link 101 is not organisation 32's": {**VICTIM, "org_id": 32},
        "link 101 is not in campaign 302": {**VICTIM, "campaign_id": 302},
        "campaign 301 is not of kind resend": {**VICTIM, "campaign_kind": "resend"},
        "campaign 301 is not on channel whatsapp": {**VICTIM, "channel": "whatsapp"},
        "link 999999 does not exist": {**VICTIM, "link_id": 999_999},
    }
    values = {
        reason: events.encode(make_event(**claims, visitor_id=f"v:{n}"))
        for n, (reason, claims) in enumerate(forged.items())
    }
    good = [events.encode(make_event(**VICTIM, visitor_id=f"v:good{n}")) for n in range(3)]
    topic = settings.kafka.clicks_topic
    await send(producer, topic, good[0], *values.values(), good[1], good[2])
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 101), (3, 3, 0)) == (3, 3, 0)
        dead = await read_topic(settings, settings.kafka.dlq_topic, len(forged))
    finally:
        await counter.stop()
    assert {dict(r.headers)["reason"].decode(): r.value for r in dead} == values
    assert await pg_counts(pool, 999_999) == (0, 0, 0)
    per_org = await pool.fetch(
        "SELECT org_id, sum(total_clicks) AS n FROM quarter_counters GROUP BY org_id ORDER BY 1"
    )
    assert [(r["org_id"], r["n"]) for r in per_org] == [(31, 3)]  # nothing reached org 32
    assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 5


async def test_a_redirector_an_hour_ahead_is_counted_at_arrival_and_once(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """Today a redirector whose clock runs an hour (and a minute) ahead sends every click to
    the dead letters. The topic is stamped by the broker (LogAppendTime); the click is counted
    in the quarter hour it arrived, and the same record read again is the same duplicate."""
    await seed_links(pool, [make_event(**VICTIM)])
    ahead = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    early = make_event(**VICTIM, occurred_at=iso(ahead), visitor_id="v:early")
    sent_at = datetime.now(UTC)
    await send(producer, settings.kafka.clicks_topic, events.encode(early), events.encode(early))
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 101), (1, 1, 0)) == (1, 1, 0)
    finally:
        await counter.stop()
    ((quarter, total),) = await quarters_counted(pool, 101)
    assert total == 1
    assert floor_quarter(sent_at) <= quarter <= floor_quarter(datetime.now(UTC))
    assert quarter < floor_quarter(ahead)
    assert counter.registry.get_sample_value("clicktrack_events_dead_lettered_total") == 0
    # another group reads the topic again from its start: the same quarter, a duplicate
    group = f"{settings.counter.group}-again"
    again = Counter(settings.changed(COUNTER_GROUP=group))
    await again.start()
    try:
        assert await wait_for(lambda: _stored(pool, group), 2) == 2
    finally:
        await again.stop()
    assert await quarters_counted(pool, 101) == [(quarter, 1)]


async def test_an_event_older_than_the_dedup_window_is_dead_lettered(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, producer: AIOKafkaProducer
) -> None:
    """Today an event from long ago is counted and recreates a day partition already dropped:
    a replay of it after the next pruning would count it twice."""
    await seed_links(pool, [make_event(**VICTIM)])
    keep = settings.counter.dedup_retention_days
    long_ago = datetime.now(UTC) - timedelta(days=keep + 3)
    old = events.encode(make_event(**VICTIM, occurred_at=iso(long_ago), visitor_id="v:old"))
    fresh = events.encode(make_event(**VICTIM, visitor_id="v:fresh"))
    await send(producer, settings.kafka.clicks_topic, old, fresh)
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: pg_counts(pool, 101), (1, 1, 0)) == (1, 1, 0)
        (dead,) = await read_topic(settings, settings.kafka.dlq_topic, 1)
    finally:
        await counter.stop()
    assert dead.value == old
    assert dict(dead.headers)["reason"].decode() == (
        f"occurred_at {iso(long_ago)} is older than the {keep}-day deduplication window"
        " (DEDUP_RETENTION_DAYS): a replay of it could not be recognised"
    )
    days = (await retention.partitions(pool))["processed_events"]
    assert long_ago.date() not in days


async def _stored(pool: asyncpg.Pool, group: str) -> int:
    total = await pool.fetchval(
        "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = $1", group
    )
    return int(total)
