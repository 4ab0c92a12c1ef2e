"""Benchmark of the counter against a bare consumer, in one run, on the real Kafka/Postgres/Redis.

1. Fills a fresh six-partition topic with `--events` numbered click events (5% duplicates).
2. Baseline: a bare aiokafka consumer reads the whole topic and decodes every record into a
   `ClickEvent` with `events.decode`, the one reader (the counter's too): what any consumer
   must do at least; records per second.
3. The counter (`python -m services.counter`, its own process) counts the same topic end to end
   into Postgres and Redis; records per second from its first stored batch to its last, and
   the result is checked exact.
   `--processes N` runs N counters in one group (the partitions split between them).
4. Click-to-visible latency: with the counter running, clicks are published at a steady
   `--rate` per second for `--seconds`; one click in 50 is a probe on a link of its own, and the
   time from its publication to its count appearing in Redis is its latency (p50, p99).

The last line printed is one JSON object with the figures, `ratio_counter_vs_bare_consume` and
`visible_p99_s`. Targets: ratio >= 0.5, p99 <= 1 s. Everything it creates (schema, topics,
Redis keys in the chosen database) is its own and removed at the end.

`--visitor-months N` first fills N earlier epochs of link_visitors and campaign_visitors (50,000
visitors each, none of the workload's, on every link and campaign of the workload): the worst
case of a counter that has run for the retention period (docs/retention.md, Cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.outcome import finish
from services.counter import retention
from services.counter.pipeline import BATCHES_IN_FLIGHT
from shared import db, events
from shared.counts import counter_key
from shared.kafka import delete_topics, ensure_topics
from shared.settings import Secret, Settings
from tests.faults.harness import CounterProcess, counter_env, progress
from tests.faults.validator import validate
from tests.faults.workload import make_workload, produce
from tests.helpers import seed_links

PROBE_EVERY = 50
PROBE_LINK_BASE = 10_000_000


def bench_settings(redis_db: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    return base.changed(
        REDIS_URL=Secret(base.redis.url.reveal().rsplit("/", 1)[0] + f"/{redis_db}"),
        POSTGRES_SCHEMA=f"bench_{tag}",
        CLICKS_TOPIC=f"clicks.bench.{tag}",
        DLQ_TOPIC=f"clicks.dlq.bench.{tag}",
        COUNTER_GROUP=f"counter-bench-{tag}",
        TOPIC_PARTITIONS=6,
    )


async def bare_consume(
    settings: Settings, total: int, decode: Callable[[bytes | None], object] = events.decode
) -> float:
    """Records per second of a bare consumer that reads and decodes the whole topic (`decode`:
    into a `ClickEvent` by default, the contract's reader)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        parts = [TopicPartition(settings.kafka.clicks_topic, p) for p in range(6)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        seen = 0
        started = 0.0
        while seen < total:
            batches = await consumer.getmany(timeout_ms=100, max_records=2000)
            for records in batches.values():
                if not started:
                    started = time.perf_counter()
                for record in records:
                    decode(record.value)
                seen += len(records)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def counter_rate(pool: object, settings: Settings, total: int) -> tuple[float, float]:
    """(records per second from the first stored batch to the last, seconds it took)."""
    first_at, first = 0.0, 0
    while True:
        done = await progress(pool, settings)  # type: ignore[arg-type]
        now = time.perf_counter()
        if done and not first_at:
            first_at, first = now, done
        if done >= total:
            return (total - first) / (now - first_at), now - first_at
        await asyncio.sleep(0.02)


def probe_event(n: int) -> events.ClickEvent:
    """Click `n` on a link of its own: its Redis key appears when the click is counted."""
    return events.ClickEvent(
        event_id=events.new_event_id(),
        occurred_at=events.utc_now_iso(),
        code=f"P{n}",
        link_id=PROBE_LINK_BASE + n,
        org_id=1,
        campaign_id=None,
        campaign_kind=None,
        channel="sms",
        recipient_id=None,
        visitor_id=f"v:probe{n}",
        user_agent=None,
        ip=None,
        referer=None,
        is_bot=False,
    )


async def steady_latency(
    settings: Settings,
    client: aioredis.Redis,
    pool: asyncpg.Pool,
    fillers: list[events.ClickEvent],
    rate: int,
    seconds: float,
) -> dict[str, float]:
    """Publish `rate` clicks a second for `seconds`; latency of the probes to Redis.

    The clicks between probes copy `fillers` (clicks of links that exist) with new ids and
    times; each probe's link is made first: the counter counts only a click whose link exists
    and belongs to the organisation it claims (a made-up one is dead-lettered, never visible).
    """
    await seed_links(
        pool, [probe_event(n) for n in range(0, int(rate * seconds) + 2 * rate, PROBE_EVERY)]
    )
    templates = [orjson.loads(events.encode(c)) for c in fillers[:200]]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done_sending = asyncio.Event()

    async def publish() -> int:
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(per_tick):
                n += 1
                if n % PROBE_EVERY == 0:
                    probe = probe_event(n)
                    sent[counter_key("link", probe.link_id)] = time.perf_counter()
                    await producer.send(settings.kafka.clicks_topic, events.encode(probe), key=b"p")
                else:
                    other = templates[n % len(templates)]
                    other["event_id"] = events.new_event_id()
                    other["occurred_at"] = events.utc_now_iso()
                    await producer.send(settings.kafka.clicks_topic, orjson.dumps(other), key=b"f")
            start_next = start + (n // per_tick) * tick
            await asyncio.sleep(max(0.0, start_next - time.perf_counter()))
        await producer.flush()
        done_sending.set()
        return n

    async def watch() -> None:
        deadline = None
        while True:
            waiting = [k for k in sent if k not in seen]
            if waiting:
                pipe = client.pipeline(transaction=False)
                for key in waiting:
                    pipe.exists(key)
                found_each = await pipe.execute()
                now = time.perf_counter()
                for key, there in zip(waiting, found_each, strict=True):
                    if there:
                        seen.add(key)
                        latencies.append(now - sent[key])
            if done_sending.is_set():
                deadline = deadline or time.perf_counter() + 30
                if len(seen) == len(sent) or time.perf_counter() > deadline:
                    return
            await asyncio.sleep(0.005)

    seen: set[str] = set()
    try:
        published, _ = await asyncio.gather(publish(), watch())
    finally:
        await producer.stop()
    ordered = sorted(latencies)
    return {
        "latency_clicks": published,
        "latency_achieved_per_s": round(published / seconds, 1),
        "probes": len(sent),
        "probes_visible": len(ordered),
        "visible_p50_s": round(statistics.median(ordered), 4) if ordered else -1.0,
        "visible_p99_s": round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 4)
        if ordered
        else -1.0,
        "visible_max_s": round(ordered[-1], 4) if ordered else -1.0,
    }


async def fill_old_epochs(pool: asyncpg.Pool, months: int, clicks: list[events.ClickEvent]) -> None:
    """`months` epochs before the current one, each with 250 visitors of every link and 2,500 of
    every campaign of `clicks` that no click of them is: the worst case, every scope clicked in
    every earlier month (`visitor_scope_epochs` says so), so every new visitor is looked for in
    each of them."""
    links = sorted({c.link_id for c in clicks})
    campaigns = sorted({c.campaign_id for c in clicks if c.campaign_id is not None})
    epoch = retention.month_of(datetime.now(UTC).date())
    async with pool.acquire() as conn:
        for _ in range(months):
            epoch = retention.month_of(epoch - timedelta(days=1))
            await retention.ensure_partitions(conn, [epoch])
            for table, key, ids, each in (
                ("link_visitors", "link_id", links, 250),
                ("campaign_visitors", "campaign_id", campaigns, 2_500),
            ):
                await conn.execute(
                    f"INSERT INTO {table} (epoch, {key}, visitor_id, first_day)"
                    " SELECT $1, s, 'old:' || g, $1 FROM unnest($2::bigint[]) s,"
                    " generate_series(1, $3) g",
                    epoch,
                    ids,
                    each,
                )
        await conn.execute(
            "INSERT INTO visitor_scope_epochs (scope, scope_id, epoch)"
            " SELECT DISTINCT 'l', link_id, epoch FROM link_visitors"
            " UNION SELECT DISTINCT 'c', campaign_id, epoch FROM campaign_visitors"
            " ON CONFLICT DO NOTHING; ANALYZE link_visitors; ANALYZE campaign_visitors"
        )


async def run(args: argparse.Namespace) -> dict[str, object]:
    settings = bench_settings(args.redis_db)
    await ensure_topics(settings.kafka)
    # clicks of the last hour, as a live pipeline sees them
    workload = make_workload(args.events, links=200, campaigns=20, visitors=50_000, days=1 / 24)
    total = len(workload.records)
    client = aioredis.Redis.from_url(settings.redis.url.reveal())
    await client.flushdb()
    result: dict[str, object] = {"bench": "counter", "events": len(workload.clicks)}
    result["records"] = total
    counters = [
        CounterProcess(
            counter_env(settings, args.port + i, LOG_LEVEL="WARNING"), Path(f"{args.log}.{i}")
        )
        for i in range(args.processes)
    ]
    result["counter_processes"] = args.processes
    result["batches_in_flight"] = BATCHES_IN_FLIGHT
    async with db.pool(settings.postgres, max_size=2) as pool:
        async with pool.acquire() as conn:
            await db.migrate(conn, settings.postgres.schema)
        await seed_links(pool, workload.clicks)  # the counter counts only links that exist
        await fill_old_epochs(pool, args.visitor_months, workload.clicks)
        result["visitor_months"] = args.visitor_months
        try:
            started = time.perf_counter()
            await produce(settings, workload.records)
            result["produce_per_s"] = round(total / (time.perf_counter() - started), 1)
            bare = await bare_consume(settings, total)
            for counter in counters:
                counter.start()
            rate, took = await counter_rate(pool, settings, total)
            await asyncio.sleep(0.5)
            problems = await validate(pool, client, workload)
            result.update(
                bare_consume_per_s=round(bare, 1),
                counter_per_s=round(rate, 1),
                counter_seconds=round(took, 2),
                ratio_counter_vs_bare_consume=round(rate / bare, 3),
                counts_exact=not problems,
            )
            result.update(
                await steady_latency(
                    settings, client, pool, workload.clicks, args.rate, args.seconds
                )
            )
            result["target_rate_per_s"] = args.rate
            result["counter_exit_codes"] = [c.terminate() for c in counters]
        finally:
            for counter in counters:
                counter.kill()
            await pool.execute(f'DROP SCHEMA IF EXISTS "{settings.postgres.schema}" CASCADE')
    await client.flushdb()
    await client.aclose()
    await delete_topics(settings.kafka)
    result["cpus"] = os.cpu_count()
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="clicks pre-filled")
    parser.add_argument("--rate", type=int, default=5_000, help="steady clicks per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the steady run")
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("BENCH_REDIS_DB", 12)))
    parser.add_argument("--port", type=int, default=18190, help="the counter's health port")
    parser.add_argument("--log", default="/tmp/clicktrack-bench-counter.log")
    parser.add_argument(
        "--processes", type=int, default=1, help="counter processes in the group (scale-out)"
    )
    parser.add_argument(
        "--visitor-months", type=int, default=0, help="earlier visitor epochs filled first"
    )
    args = parser.parse_args()
    return finish("counter", lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    sys.exit(main())
