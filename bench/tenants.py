"""Fairness benchmark: one organisation abuses the API and the webhook relay while another works,
and the working organisation's latency is measured without and with the abuse, in one run.

Against the running Kafka, Postgres and Redis, in a schema, topics and consumer group of its own
(dropped at the end) and Redis database `--redis-db` (default 13, flushed before and after). The
API (`python -m services.api`) and the webhook relay (`python -m services.relay`) run as their
own processes on 127.0.0.1, behind a pretend load balancer (`API_TRUSTED_PROXIES=127.0.0.1/32`,
each client's address in `X-Forwarded-For`); the receivers of both organisations' webhooks run
here.

The quiet organisation makes `--requests` paced requests per phase (20 a second, within its rate
limit): its campaigns, its campaign report, its CSV export, one rendered message; and it gets one
click a second posted to its webhook. Phase one is quiet (the baseline). In phase two the abuser
at once keeps 12 CSV exports of 92 days of hours open without reading them, floods the API with
bad keys from its own address, renders a 10,000-URL batch (again whenever one ends), and has a
webhook endpoint that answers 503 with `Retry-After: 300` to its own clicks (20 a second).

Reported: the quiet organisation's p50 and p99 seconds per phase and `ratio_p99_abused_vs_quiet`
(target at most 2), `errors_for_quiet_org` (any answer but 2xx in either phase, and any of its
clicks not posted to its webhook within 10 s: target 0), its webhook delivery times, what the
abuse got, and the load average. Bounded: it stops by itself after both phases, and ends the
processes it started by their PIDs. The last line of output is one JSON object.

Usage: bench/tenants [--requests N] [--redis-db D]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaProducer

from bench.outcome import finish
from services.api.window import floor_hour
from services.relay import endpoints
from shared import db, events
from shared.apikeys import create_api_key
from shared.kafka import delete_topics, ensure_topics
from shared.links import create_campaign, create_org
from shared.settings import Secret, Settings

QUIET_ADDRESS, ABUSER_ADDRESS = "198.51.100.10", "203.0.113.66"
PACE_S = 0.05
"""Between two quiet requests: 20 a second, within the default rate limit."""
SLOW_READERS = 12
HOURS, ABUSER_LINKS = 92 * 24, 60
BATCH_URLS = 10_000
WEBHOOK_WAIT_S = 10.0
"""A quiet click not posted to its webhook within this long counts as an error."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bench_settings(redis_db: int) -> Settings:
    tag = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    return base.changed(
        REDIS_URL=Secret(base.redis.url.reveal().rsplit("/", 1)[0] + f"/{redis_db}"),
        POSTGRES_SCHEMA=f"bench_tenants_{tag}",
        CLICKS_TOPIC=f"clicks.bench.{tag}",
        DLQ_TOPIC=f"clicks.dlq.bench.{tag}",
        WEBHOOK_DLQ_TOPIC=f"clicks.bench.{tag}.webhooks-dlq",
        RELAY_GROUP=f"relay-bench-{tag}",
        COUNTER_GROUP=f"counter-bench-{tag}",
        API_PORT=free_port(),
        RELAY_PORT=free_port(),
    )


def process_env(settings: Settings) -> dict[str, str]:
    """The environment of the API and relay processes: this run's names, local receivers."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "REDIS_URL": settings.redis.url.reveal(),
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "DLQ_TOPIC": settings.kafka.dlq_topic,
        "COUNTER_GROUP": settings.counter.group,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(settings.api.port),
        "API_TRUSTED_PROXIES": "127.0.0.1/32",
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(settings.relay.port),
        "RELAY_GROUP": settings.relay.group,
        "WEBHOOK_DLQ_TOPIC": settings.relay.webhook_dlq_topic,
        "WEBHOOK_ALLOW_INSECURE": "true",
        # the relay opens the secrets this run sealed, and its API metrics stay off 8092
        "WEBHOOK_SECRET_KEY": settings.relay.webhook_secret_key.reveal(),
        "API_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Receivers:
    """The two organisations' webhook endpoints: the quiet one answers 204 and notes when each
    event arrived; the abuser's answers 503 with Retry-After: 300."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.stalled_posts = 0

    async def quiet(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.monotonic()
        for event in body["data"]["events"]:
            self.arrived.setdefault(event["event_id"], now)
        return web.Response(status=204)

    async def stalled(self, request: web.Request) -> web.Response:
        await request.read()
        self.stalled_posts += 1
        return web.Response(status=503, headers={"Retry-After": "300"})


class Quiet:
    """The working organisation's paced requests and clicks."""

    def __init__(self, api: str, key: str, campaign: int, org_id: int) -> None:
        self.api, self.key, self.campaign, self.org_id = api, key, campaign, org_id
        self.errors: Counter[str] = Counter()

    async def phase(
        self, http: aiohttp.ClientSession, producer: AIOKafkaProducer, topic: str, n: int
    ) -> tuple[list[float], dict[str, float]]:
        """`n` paced requests (and a click a second); their seconds, and each click's id with
        the time it was published."""
        headers = {"Authorization": f"Bearer {self.key}", "X-Forwarded-For": QUIET_ADDRESS}
        render = {
            "campaign_id": self.campaign,
            "recipient": "+919800000001",
            "template": "Dear {#var#}, your offer: {#var#} -ACME",
            "values": ["Asha", "https://shop.example.in/diwali?utm_source=sms"],
        }
        calls = [
            ("GET", "/v1/campaigns", None),
            ("GET", f"/v1/campaigns/{self.campaign}/report", None),
            ("GET", f"/v1/campaigns/{self.campaign}/report.csv", None),
            ("POST", "/v1/render", render),
        ]
        seconds: list[float] = []
        clicks: dict[str, float] = {}
        start = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i * PACE_S - time.monotonic()))
            method, path, body = calls[i % len(calls)]
            began = time.perf_counter()
            async with http.request(method, path, json=body, headers=headers) as r:
                await r.read()
                if not 200 <= r.status < 300:
                    self.errors[f"{method} {path.split('?')[0]} {r.status}"] += 1
            seconds.append(time.perf_counter() - began)
            if i % int(1 / PACE_S) == 0:
                event = click(self.org_id, f"v:q{i}")
                await producer.send_and_wait(topic, events.encode(event), key=b"q")
                clicks[event.event_id] = time.monotonic()
        return seconds, clicks


def click(org_id: int, visitor: str) -> events.ClickEvent:
    return events.ClickEvent(
        event_id=events.new_event_id(),
        occurred_at=events.utc_now_iso(),
        code="BenchCode1",
        link_id=1,
        org_id=org_id,
        channel="sms",
        visitor_id=visitor,
        is_bot=False,
    )


async def slow_reader(port: int, path: str, key: str) -> tuple[asyncio.StreamWriter, bytes]:
    """A client that asks for an export, reads its first bytes and then nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"X-Forwarded-For: {ABUSER_ADDRESS}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(30):
        first = await reader.read(1024)
    return writer, first


class Abuse:
    """The abuser's four kinds of pressure, run until `stop` is set."""

    def __init__(self, api: str, port: int, key: str, campaign: int, org_id: int) -> None:
        self.api, self.port, self.key, self.campaign, self.org_id = api, port, key, campaign, org_id
        self.stop = asyncio.Event()
        self.answers: Counter[str] = Counter()
        self.readers: list[tuple[asyncio.StreamWriter, bytes]] = []

    async def slow_csv_readers(self, end: datetime) -> None:
        start = end - timedelta(hours=HOURS)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        path = f"/v1/report.csv?from={start:{fmt}}&to={end:{fmt}}&bucket=hour"
        for _ in range(SLOW_READERS):
            self.readers.append(await slow_reader(self.port, path, self.key))
        self.answers.update(f"csv {first.split(b' ', 2)[1].decode()}" for _, first in self.readers)

    async def bad_keys(self, http: aiohttp.ClientSession) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            headers = {"Authorization": f"Bearer ck_bad{n}", "X-Forwarded-For": ABUSER_ADDRESS}
            async with http.get("/v1/campaigns", headers=headers) as resp:
                await resp.read()
                self.answers[f"bad key {resp.status}"] += 1
            await asyncio.sleep(0.005)

    async def batches(self, http: aiohttp.ClientSession) -> None:
        """10,000-URL batches, one after the other; a refused one is sent again after its
        Retry-After (the body is encoded once: this process also measures the quiet one)."""
        headers = {
            "Authorization": f"Bearer {self.key}",
            "X-Forwarded-For": ABUSER_ADDRESS,
            "Content-Type": "application/json",
        }
        round_ = 0
        while not self.stop.is_set():
            round_ += 1
            messages = [
                {"recipient": f"r{i}", "values": [f"https://shop.example.in/{round_}/{i}"]}
                for i in range(BATCH_URLS)
            ]
            body = json.dumps(
                {"template": "Offer: {#var#}", "messages": messages, "campaign_id": self.campaign}
            ).encode()
            status = 429
            while status == 429 and not self.stop.is_set():
                async with http.post("/v1/render/batch", data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
                    self.answers[f"batch {status}"] += 1
                    wait = float(resp.headers.get("Retry-After", "0") or 0)
                if status == 429:
                    await asyncio.sleep(wait)

    async def clicks(self, producer: AIOKafkaProducer, topic: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            await producer.send_and_wait(topic, events.encode(click(self.org_id, f"v:a{n}")))
            await asyncio.sleep(0.05)

    def close(self) -> None:
        for writer, _ in self.readers:
            writer.close()


async def fill_counters(pool: asyncpg.Pool, org_id: int, end: datetime) -> None:
    await pool.execute(
        "INSERT INTO quarter_counters (link_id, quarter, channel, org_id, total_clicks)"
        " SELECT 1000000 + l, $2::timestamptz - h * interval '1 hour', 'sms', $1, 3"
        " FROM generate_series(1, $3::int) l, generate_series(1, $4::int) h",
        org_id,
        end,
        ABUSER_LINKS,
        HOURS,
    )


async def wait_ready(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {seconds} s")
            await asyncio.sleep(0.2)


def spawn(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`python -m module` on 127.0.0.1 with `env`; ended by `stop_process` (its PID)."""
    quiet = subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=quiet, stderr=quiet)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


def webhook_figures(
    receivers: Receivers, clicks: dict[str, float], errors: Counter[str]
) -> dict[str, Any]:
    delays = [receivers.arrived[e] - t for e, t in clicks.items() if e in receivers.arrived]
    late = [d for d in delays if d > WEBHOOK_WAIT_S]
    missing = len(clicks) - len(delays) + len(late)
    if missing:
        errors["webhook not posted within 10 s"] += missing
    return {
        "clicks": len(clicks),
        "p50_s": round(statistics.median(delays), 4) if delays else None,
        "max_s": round(max(delays), 4) if delays else None,
        "missing_or_late": missing,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = bench_settings(args.redis_db)
    await ensure_topics(settings.kafka, [settings.kafka.clicks_topic, settings.kafka.dlq_topic])
    await ensure_topics(settings.kafka, [settings.relay.webhook_dlq_topic])
    redis = aioredis.Redis.from_url(settings.redis.url.reveal())
    await redis.flushdb()
    receivers = Receivers()
    hooks = web.Application()
    hooks.router.add_post("/quiet", receivers.quiet)
    hooks.router.add_post("/stalled", receivers.stalled)
    hook_runner = web.AppRunner(hooks, access_log=None)
    await hook_runner.setup()
    hook_site = web.TCPSite(hook_runner, "127.0.0.1", 0)
    await hook_site.start()
    hook_base = hook_site.name
    processes: list[subprocess.Popen[bytes]] = []
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        async with db.pool(settings.postgres, max_size=2) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, settings.postgres.schema)
            quiet_org = await create_org(pool, "Quiet", tracking=True)
            abuser_org = await create_org(pool, "Abuser", tracking=True)
            # the DLT whitelist is not what this measures: both render without its check
            await pool.execute("UPDATE orgs SET dlt_whitelist_check = false")
            _, quiet_key = await create_api_key(pool, quiet_org, "bench")
            _, abuser_key = await create_api_key(pool, abuser_org, "bench")
            quiet_campaign = await create_campaign(pool, quiet_org, "Diwali", "one_time")
            abuser_campaign = await create_campaign(pool, abuser_org, "Spam", "one_time")
            seal = endpoints.secrets_sealer(settings.relay.webhook_secret_key)
            for org_id, path in ((quiet_org, "quiet"), (abuser_org, "stalled")):
                url = f"{hook_base}/{path}"
                await endpoints.register(
                    pool, org_id, url, allow_insecure=True, sealer=seal, operator="bench",
                    ticket=None,
                )  # fmt: skip
            end = floor_hour(datetime.now(UTC))
            await fill_counters(pool, abuser_org, end)
            env = process_env(settings)
            processes += [spawn(m, env) for m in ("services.api", "services.relay")]
            api = f"http://127.0.0.1:{settings.api.port}"
            await wait_ready(f"{api}/readyz")
            await wait_ready(f"http://127.0.0.1:{settings.relay.port}/healthz")
            await asyncio.sleep(3)  # the relay's group has its partitions
            quiet = Quiet(api, quiet_key, quiet_campaign, quiet_org)
            topic = settings.kafka.clicks_topic
            async with aiohttp.ClientSession(base_url=api) as http:
                await quiet.phase(http, producer, topic, 20)  # warm up (not measured)
                quiet.errors.clear()
                receivers.arrived.clear()
                calm, calm_clicks = await quiet.phase(http, producer, topic, args.requests)
                await asyncio.sleep(WEBHOOK_WAIT_S)
                calm_hooks = webhook_figures(receivers, calm_clicks, quiet.errors)

                abuse = Abuse(api, settings.api.port, abuser_key, abuser_campaign, abuser_org)
                async with aiohttp.ClientSession(base_url=api) as abuser_http:
                    tasks = [asyncio.create_task(abuse.batches(abuser_http))]
                    await asyncio.sleep(1)  # the first batch holds one of the abuser's slots
                    await abuse.slow_csv_readers(end)
                    tasks += [
                        asyncio.create_task(abuse.bad_keys(abuser_http)),
                        asyncio.create_task(abuse.clicks(producer, topic)),
                    ]
                    await asyncio.sleep(2)  # the abuse is under way
                    try:
                        loaded, loaded_clicks = await quiet.phase(
                            http, producer, topic, args.requests
                        )
                        await asyncio.sleep(WEBHOOK_WAIT_S)
                    finally:
                        abuse.stop.set()
                        await asyncio.wait(tasks, timeout=120)
                        for task in tasks:
                            task.cancel()
                        abuse.close()
                loaded_hooks = webhook_figures(receivers, loaded_clicks, quiet.errors)
            load = os.getloadavg()
            try:
                async with pool.acquire() as conn:
                    await conn.execute(f'DROP SCHEMA "{settings.postgres.schema}" CASCADE')
            except asyncpg.PostgresError:
                pass
    finally:
        for process in processes:
            stop_process(process)
        await producer.stop()
        await hook_runner.cleanup()
        await redis.flushdb()
        await redis.aclose()
        await delete_topics(
            settings.kafka,
            [
                settings.kafka.clicks_topic,
                settings.kafka.dlq_topic,
                settings.relay.webhook_dlq_topic,
            ],
        )
    calm_p99, loaded_p99 = percentile(calm, 0.99), percentile(loaded, 0.99)
    return {
        "requests_per_phase": args.requests,
        "quiet": {
            "p50_s": round(statistics.median(calm), 4),
            "p99_s": round(calm_p99, 4),
            "webhook": calm_hooks,
        },
        "abused": {
            "p50_s": round(statistics.median(loaded), 4),
            "p99_s": round(loaded_p99, 4),
            "webhook": loaded_hooks,
        },
        "abuse": {
            "answers": dict(sorted(abuse.answers.items())),
            "stalled_endpoint_posts": receivers.stalled_posts,
        },
        "quiet_errors": dict(quiet.errors),
        "errors_for_quiet_org": sum(quiet.errors.values()),
        "ratio_p99_abused_vs_quiet": round(loaded_p99 / calm_p99, 2),
        "target_ratio": 2.0,
        "load_avg_1m": round(load[0], 2),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--redis-db", type=int, default=13)
    args = parser.parse_args()
    return finish("tenants", lambda: asyncio.run(run(args)))


if __name__ == "__main__":
    raise SystemExit(main())
