"""Reports benchmark: a campaign sent to 1,000,000 recipients with 100,000 clicks, then the time
the reports API takes to answer about it, against the running Kafka, Postgres and Redis.

Setup, in a schema, topics and consumer group of its own (dropped at the end) and Redis database
`--redis-db` (default 8, flushed before and after): an organisation, a campaign whose link gets a
code for each of 1,000,000 recipients (bulk COPY minting), and a resend of it with a new link for
200,000 of them. 100,000 click events (90% on the original, 3% bots, arriving over 72 hours, most
in the first hours) are published to Kafka and counted by the real counter (`Counter`), so every
counter row is what production would write. Then the API (`create_app`) listens on 127.0.0.1
(`--port`, default 8084) and each report endpoint is asked `--requests` times in a row over HTTP.

Reported: p50 and p99 seconds per endpoint; `p50_s`/`p99_s` are the campaign report's (default
window: 7 days of hours, asked again and again as a dashboard does), `uncached_p99_s` the same
report with a new window each time (its distinct visitors counted afresh);
`nonclickers_first_page_p99_s` is the first page (100) of the campaign's non-clickers, and
`nonclickers_csv_s` the time to stream all of them as CSV (the slowest of three; each checked to
hold exactly the recipients minus the clickers). Baselines
measured in the same run on the same server: `/healthz` (the HTTP floor) and the campaign
report's cheapest read alone (`SELECT 1` on the pool). The answers are checked against the counts
of the generated events. The last line of output is one JSON object.

Usage: bench/report [--recipients N] [--clicks N] [--requests N] [--port P] [--redis-db D]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.outcome import finish
from services.api.app import create_app
from services.counter.counter import Counter
from shared import db, events
from shared.apikeys import create_api_key
from shared.kafka import delete_topics, ensure_topics
from shared.links import create_campaign, create_link, create_org
from shared.minting import mint
from shared.recipients import RecipientKeys
from shared.settings import Secret, Settings

RESEND_SHARE = 0.2
"""Share of the recipients the resend goes to."""
BOT_SHARE = 0.03


def arrival(rng: random.Random, send: datetime) -> datetime:
    """When a click arrives: most within hours of the send, a tail over three days."""
    hours = min(rng.expovariate(1 / 6), 71.9)
    return send + timedelta(hours=hours)


def make_clicks(
    rng: random.Random,
    count: int,
    send: datetime,
    targets: list[tuple[int, int, str, list[str], list[str]]],
    org_id: int,
) -> tuple[list[events.ClickEvent], dict[int, dict[str, int]]]:
    """`count` events over `targets` (link, campaign, kind, recipients, codes), and what they
    should count to per campaign: total, unique recipients, bots."""
    made: list[events.ClickEvent] = []
    expected: dict[int, dict[str, Any]] = {}
    for n in range(count):
        link_id, campaign_id, kind, recipients, codes = targets[0 if n % 10 else 1]
        i = min(int(rng.paretovariate(1.2)) - 1, len(recipients) - 1)  # some tap again and again
        i = rng.randrange(len(recipients)) if rng.random() < 0.7 else i
        bot = rng.random() < BOT_SHARE
        at = arrival(rng, send)
        made.append(
            events.ClickEvent(
                event_id=events.new_event_id(),
                occurred_at=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                code=codes[i],
                link_id=link_id,
                org_id=org_id,
                campaign_id=campaign_id,
                campaign_kind=kind,
                channel="sms",
                recipient_id=recipients[i],
                visitor_id=f"r:{recipients[i]}",
                user_agent="Bench/1.0",
                ip="203.0.113.0",
                referer=None,
                is_bot=bot,
                bot_reason="head" if bot else None,
            )
        )
        seen = expected.setdefault(campaign_id, {"total": 0, "visitors": set(), "bots": 0})
        if bot:
            seen["bots"] += 1
        else:
            seen["total"] += 1
            seen["visitors"].add(recipients[i])
    return made, {
        c: {"total": e["total"], "unique": len(e["visitors"]), "bots": e["bots"]}
        for c, e in expected.items()
    }


async def publish(settings: Settings, clicks: list[events.ClickEvent]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, acks="all", linger_ms=20
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for at in range(0, len(clicks), 5000):
            batch = clicks[at : at + 5000]
            sent = [
                await producer.send(
                    settings.kafka.clicks_topic, value=events.encode(e), key=e.code.encode()
                )
                for e in batch
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def timed(calls: int, call: Callable[[], Awaitable[None]]) -> dict[str, float]:
    for _ in range(5):  # warm-up: pools, statement caches
        await call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_s": round(statistics.median(samples), 4),
        "p99_s": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 4),
        "max_s": round(samples[-1], 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)
    tag = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    base = Settings.from_env()
    settings = base.changed(
        POSTGRES_SCHEMA=f"bench_report_{tag}",
        CLICKS_TOPIC=f"clicks.bench.report.{tag}",
        DLQ_TOPIC=f"clicks.dlq.bench.report.{tag}",
        COUNTER_GROUP=f"bench-report-{tag}",
        REDIS_URL=Secret(base.redis.url.reveal().rsplit("/", 1)[0] + f"/{args.redis_db}"),
        COUNTER_PORT=0,
        API_PORT=args.port,
        API_METRICS_PORT=0,
        # The bench measures how fast reports are answered, back to back from one key: the API's
        # own limit (API_RATE_PER_S, 50/s) would answer 429 after its burst and measure nothing.
        API_RATE_PER_S=1_000_000,
        API_RATE_BURST=1_000_000,
    )
    redis = aioredis.Redis.from_url(settings.redis.url.reveal())
    await redis.flushdb()
    await ensure_topics(settings.kafka)
    result: dict[str, Any] = {}
    try:
        async with db.pool(settings.postgres, max_size=4) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, settings.postgres.schema)
            try:
                result = await _measure(args, settings, pool)
            finally:
                await pool.execute(f'DROP SCHEMA "{settings.postgres.schema}" CASCADE')
    finally:
        await redis.flushdb()
        await redis.aclose()
        await delete_topics(settings.kafka)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_1m_before": load_before,
        "load_1m_after": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "services": "local Kafka, Postgres and Redis, shared with other work",
    }
    return result


async def _measure(args: argparse.Namespace, settings: Settings, pool: Any) -> dict[str, Any]:
    rng = random.Random(6)
    org_id = await create_org(pool, "Bench", tracking=True)
    _, key = await create_api_key(pool, org_id, "bench")
    original = await create_campaign(pool, org_id, "Diwali", "one_time")
    resend = await create_campaign(pool, org_id, "Diwali reminder", "resend", parent_id=original)
    link = await create_link(
        pool,
        org_id=org_id,
        campaign_id=original,
        destination="https://shop.example.in/diwali",
        code_length=settings.links.code_length,
    )
    again = await create_link(
        pool,
        org_id=org_id,
        campaign_id=resend,
        destination="https://shop.example.in/last-call",
        code_length=settings.links.code_length,
    )
    recipients = [f"+91{9_000_000_000 + i}" for i in range(args.recipients)]
    started = time.perf_counter()
    vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
    async with pool.acquire() as conn:
        first = await mint(
            conn, link.link_id, recipients, length=settings.links.code_length, vault=vault
        )
        second = await mint(
            conn,
            again.link_id,
            recipients[: int(len(recipients) * RESEND_SHARE)],
            length=settings.links.code_length,
            vault=vault,
        )
    mint_seconds = time.perf_counter() - started
    targets = [
        (link.link_id, original, "one_time", [str(r) for r in first.pseudonyms[:-1]],
         first.codes[:-1]),
        (again.link_id, resend, "resend", [str(r) for r in second.pseudonyms[:-1]],
         second.codes[:-1]),
    ]  # fmt: skip
    send = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=72)
    clicks, expected = make_clicks(rng, args.clicks, send, targets, org_id)
    publish_seconds = await publish(settings, clicks)

    counter = Counter(settings)
    started = time.perf_counter()
    await counter.start()
    try:
        while True:
            done = await pool.fetchval(
                "SELECT coalesce(sum(total_clicks + bot_clicks), 0) FROM campaign_counters"
            )
            if done >= args.clicks or time.perf_counter() - started > 600:
                break
            await asyncio.sleep(0.2)
        count_seconds = time.perf_counter() - started
    finally:
        await counter.stop()
    assert done == args.clicks, f"counted {done} of {args.clicks} clicks"

    runner = web.AppRunner(create_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    api = site.name  # the port the kernel chose, with the default --port 0
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with aiohttp.ClientSession(base_url=api, headers=headers) as http:
            report = await _get(http, f"/v1/campaigns/{original}/report?from={send.date()}")
            want = expected[original]
            got = report["totals"]
            assert (got["total"], got["unique"], got["bots"]) == (
                want["total"], want["unique"], want["bots"],
            ), (got, want)  # fmt: skip
            family = {f["campaign"]["id"]: f["totals"] for f in report["family"]}
            assert family[resend]["total"] == expected[resend]["total"]
            assert sum(p["total"] for p in report["series"]) == want["total"]

            async def get(path: str) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    async with http.get(path) as resp:
                        assert resp.status == 200, (path, resp.status)
                        await resp.read()

                return call

            india = "tz=Asia/Kolkata&bucket=day&from=" + str(send.date())
            endpoints = {
                "campaign_report": f"/v1/campaigns/{original}/report",
                "campaign_report_days_india": f"/v1/campaigns/{original}/report?{india}",
                "link_report": f"/v1/links/{link.link_id}/report",
                "org_report": "/v1/report",
                "campaign_csv": f"/v1/campaigns/{original}/report.csv",
                "campaign_chart_svg": f"/v1/campaigns/{original}/chart.svg",
                "nonclickers_first_page": f"/v1/campaigns/{original}/non-clickers?limit=100",
                "clickers_first_page": f"/v1/campaigns/{original}/clickers?limit=100",
                "baseline_healthz": "/healthz",
            }
            measured = {
                name: await timed(args.requests, await get(path))
                for name, path in endpoints.items()
            }

            async def select_one() -> None:
                await pool.fetchval("SELECT 1")

            measured["baseline_postgres_select_1"] = await timed(args.requests, select_one)

            # The API keeps distinct-visitor counts under the version of their rows
            # (insights.UniqueCache), so the requests above are answered mostly from it. Here
            # every request asks for another window (its start a quarter hour earlier each
            # time): every answer is counted afresh, as after a click.
            fresh = iter(range(1_000_000))

            async def uncached() -> None:
                since = send - timedelta(minutes=15 * (next(fresh) + 1))
                path = f"/v1/campaigns/{original}/report?from={since:%Y-%m-%dT%H:%M:%SZ}"
                async with http.get(path) as resp:
                    assert resp.status == 200, (path, resp.status)
                    await resp.read()

            measured["campaign_report_uncached"] = await timed(
                max(args.requests // 5, 10), uncached
            )

            page = await _get(http, f"/v1/campaigns/{original}/non-clickers?limit=100")
            assert len(page["items"]) == 100, page
            csv_seconds = []
            for _ in range(3):
                started = time.perf_counter()
                lines = 0
                async with http.get(f"/v1/campaigns/{original}/non-clickers.csv") as resp:
                    assert resp.status == 200, resp.status
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        lines += chunk.count(b"\n")
                csv_seconds.append(time.perf_counter() - started)
                # the header, then every recipient minus the clickers
                assert lines == 1 + args.recipients - want["unique"], (lines, want)
    finally:
        await runner.cleanup()
    campaign = measured["campaign_report"]
    return {
        "bench": "report",
        "recipients": args.recipients,
        "codes_minted": first.minted + second.minted,
        "clicks": args.clicks,
        "counted": {
            "original": expected[original],
            "resend": expected[resend],
        },
        "counter_rows": "written by the real counter (services.counter) from generated events",
        "setup_seconds": {
            "mint": round(mint_seconds, 1),
            "publish": round(publish_seconds, 1),
            "count": round(count_seconds, 1),
        },
        "requests_per_endpoint": args.requests,
        "endpoints": measured,
        "p50_s": campaign["p50_s"],
        "p99_s": campaign["p99_s"],
        "target_s": 1.0,
        "uncached_p50_s": measured["campaign_report_uncached"]["p50_s"],
        "uncached_p99_s": measured["campaign_report_uncached"]["p99_s"],
        "nonclickers_first_page_p99_s": measured["nonclickers_first_page"]["p99_s"],
        "nonclickers_first_page_target_s": 0.25,
        "nonclickers_csv_s": round(max(csv_seconds), 2),
        "nonclickers_csv_target_s": 10.0,
        "nonclickers": args.recipients - want["unique"],
        "over_http_floor_p50": round(campaign["p50_s"] / measured["baseline_healthz"]["p50_s"], 1),
    }


async def _get(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(path) as resp:
        assert resp.status == 200, (path, resp.status, await resp.text())
        return orjson.loads(await resp.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--clicks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=0, help="the API's port; 0: any free one")
    parser.add_argument("--redis-db", type=int, default=8)
    args = parser.parse_args()
    return finish("report", lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    sys.exit(main())
