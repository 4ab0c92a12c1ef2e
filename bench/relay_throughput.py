"""Webhook relay throughput against its floor: the same signed POSTs sent straight to the receiver.

Run against the native stack (`make stack-up`): `.venv/bin/python bench/relay_throughput.py`.
It makes its own Postgres schema, topic and consumer group, publishes `--events` click events of
one organisation, and measures:

- baseline: one task posting the same batches (100 events, signed) to a local receiver, no Kafka
  and no Postgres: the HTTP cost the relay cannot go below;
- relay: the real `Relay` reading those events from Kafka and posting them to the same receiver.

Bounded: one receiver on 127.0.0.1:18310, at most `--events` events (default 5000), and it stops
by itself. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer

from services.relay import endpoints, signing
from services.relay.delivery import message_id, payload
from services.relay.relay import Relay
from shared import db, events
from shared.kafka import ensure_topics
from shared.orgs import create_org
from shared.settings import Settings

PORT = 18310
BATCH = 100


def make_events(org_id: int, n: int) -> list[events.ClickEvent]:
    return [
        events.ClickEvent(
            event_id=events.new_event_id(),
            occurred_at=events.utc_now_iso(),
            code="BenchCode1",
            link_id=1,
            org_id=org_id,
            campaign_id=None,
            campaign_kind=None,
            channel="sms",
            recipient_id=None,
            visitor_id=f"v:{i}",
            user_agent="Bench/1",
            ip="203.0.113.0",
            referer=None,
            is_bot=False,
        )
        for i in range(n)
    ]


async def main(n: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    settings = Settings.from_env().changed(
        POSTGRES_SCHEMA=f"bench_{tag}",
        CLICKS_TOPIC=f"clicks.bench.{tag}",
        WEBHOOK_DLQ_TOPIC=f"webhooks.dlq.bench.{tag}",
        RELAY_GROUP=f"relay-bench-{tag}",
        RELAY_START_FROM="earliest",
        WEBHOOK_ALLOW_INSECURE=True,
        TOPIC_PARTITIONS=3,
    )
    received = 0
    first_at = 0.0
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        nonlocal received, first_at
        body = await request.read()
        if received == 0:
            first_at = time.perf_counter()
        received += len(json.loads(body)["data"]["events"])
        if received >= n:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    url = f"http://127.0.0.1:{PORT}/hook"
    try:
        async with db.pool(settings.postgres, max_size=2) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, settings.postgres.schema)
            try:
                org = await create_org(pool, "Bench", tracking=True)
                endpoint, secret = await endpoints.register(
                    pool,
                    org,
                    url,
                    allow_insecure=True,
                    sealer=endpoints.secrets_sealer(settings.relay.webhook_secret_key),
                    operator="bench",
                    ticket=None,
                )
                clicks = make_events(org, n)

                # baseline: the same signed batches, posted directly
                started = time.perf_counter()
                async with aiohttp.ClientSession() as http:
                    for i in range(0, n, BATCH):
                        chunk = clicks[i : i + BATCH]
                        body = payload(chunk)
                        headers = signing.headers(secret, message_id(endpoint, chunk), body)
                        async with http.post(url, data=body, headers=headers) as resp:
                            assert resp.status == 204
                baseline_s = time.perf_counter() - started
                assert received == n
                received, _ = 0, done.clear()

                await ensure_topics(
                    settings.kafka, [settings.kafka.clicks_topic, settings.relay.webhook_dlq_topic]
                )
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.kafka.bootstrap_servers, linger_ms=5
                )
                await producer.start()
                try:
                    for e in clicks:
                        await producer.send(
                            settings.kafka.clicks_topic, events.encode(e), key=b"BenchCode1"
                        )
                    await producer.flush()
                finally:
                    await producer.stop()

                relay = Relay(settings)
                started = time.perf_counter()
                await relay.start()
                try:
                    try:
                        await asyncio.wait_for(done.wait(), timeout=120)
                    except TimeoutError:
                        raise SystemExit(
                            f"relay delivered {received} of {n} events in 120 s"
                        ) from None
                    ended = time.perf_counter()
                    relay_s, steady_s = ended - started, ended - first_at
                finally:
                    await relay.stop()
            finally:
                await pool.execute(f'DROP SCHEMA "{settings.postgres.schema}" CASCADE')
    finally:
        await runner.cleanup()
    return {
        "bench": "relay_throughput",
        "events": n,
        "batch": BATCH,
        "relay_events_per_s": round(n / relay_s, 1),
        "baseline_direct_post_events_per_s": round(n / baseline_s, 1),
        "relay_vs_baseline": round(baseline_s / relay_s, 3),
        "relay_after_first_post_events_per_s": round((n - BATCH) / steady_s, 1),
        "relay_seconds_incl_consumer_join": round(relay_s, 3),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(min(args.events, 50_000)))))
