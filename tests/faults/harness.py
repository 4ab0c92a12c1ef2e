"""Tools of the fault tests and the counter benchmark: a numbered workload, its expected counts,
a fast producer, counter subprocesses, and a validator that names any missing or extra click.

Every click carries its number in its event id (`click_id`), like the sequence numbers of
Flink's exactly-once sink tests: the validator lists the numbers Postgres is missing or holds in
excess, then compares every counter in Postgres and Redis with the counts computed here.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.counter import store
from shared import events
from shared.counts import CountStore
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[int, int, int]  # total, unique, bots


def click_id(run: int, n: int) -> str:
    """The event id of click `n` of a run: its number is readable in the last group."""
    return str(uuid.UUID(f"{run:08x}-0000-7000-8000-{n:012x}"))


def click_number(event_id: uuid.UUID | str) -> int:
    return int(str(event_id).rsplit("-", 1)[1], 16)


@dataclass
class Workload:
    """Numbered clicks (`clicks[n]` is click n) and the records to publish (with duplicates)."""

    clicks: list[events.ClickEvent]
    records: list[tuple[bytes, bytes]]  # (key, value) in publish order
    poison: int = 0

    @property
    def duplicates(self) -> int:
        return len(self.records) - len(self.clicks) - self.poison


def make_workload(
    n: int,
    *,
    links: int = 40,
    campaigns: int = 8,
    visitors: int = 5_000,
    bot_share: float = 0.05,
    duplicate_share: float = 0.05,
    days: float = 3.0,
    seed: int = 5,
) -> Workload:
    """`n` distinct clicks over `links` links (in `campaigns` campaigns, one link in ten without a
    campaign), spread over the last `days` UTC days and two channels, with `duplicate_share` of
    them published a second time later on."""
    rng = random.Random(seed)
    run = rng.randrange(1, 2**32)
    now = datetime.now(UTC).replace(microsecond=0)
    clicks = []
    for i in range(n):
        link = rng.randrange(1, links + 1)
        campaign = None if link % 10 == 0 else 1000 + link % campaigns
        bot = rng.random() < bot_share
        at = now - timedelta(seconds=rng.randrange(0, max(1, int(days * 86400))))
        clicks.append(
            events.ClickEvent(
                event_id=click_id(run, i),
                occurred_at=at.isoformat().replace("+00:00", "Z"),
                code=f"C{link:04d}x{i % 7}",
                link_id=link,
                org_id=500 + link % 3,
                campaign_id=campaign,
                campaign_kind="one_time" if campaign else None,
                channel="sms" if link % 4 else "whatsapp",
                recipient_id=None,
                visitor_id=f"v:{rng.randrange(visitors)}" if not bot else f"bot:{i}",
                user_agent="WhatsApp/2.0" if bot else "Mozilla/5.0",
                ip="203.0.113.0",
                referer=None,
                is_bot=bot,
                bot_reason="ua:WhatsApp" if bot else None,
            )
        )
    records = [(c.code.encode(), events.encode(c)) for c in clicks]
    for i in rng.sample(range(n), int(n * duplicate_share)):
        # a redelivery: the same bytes again, later on (producer retry, spool replay)
        records.insert(rng.randrange(i + 1, len(records) + 1), records[i])
    return Workload(clicks, records)


@dataclass
class Expected:
    """The exact counts of a workload, computed the plain way."""

    links: dict[int, Key] = field(default_factory=dict)
    campaigns: dict[int, Key] = field(default_factory=dict)
    days: dict[tuple[str, int, date], Key] = field(default_factory=dict)
    hours: dict[tuple[int, datetime, str], Key] = field(default_factory=dict)


def expected_counts(clicks: Iterable[events.ClickEvent]) -> Expected:
    total: dict[tuple[object, ...], int] = defaultdict(int)
    bots: dict[tuple[object, ...], int] = defaultdict(int)
    seen: dict[tuple[object, ...], set[str]] = defaultdict(set)
    hour_keys: set[tuple[int, datetime, str]] = set()
    for c in clicks:
        at = datetime.fromisoformat(c.occurred_at)
        day, hour = at.date(), at.replace(minute=0, second=0, microsecond=0)
        scopes: list[tuple[object, ...]] = [("link", c.link_id), ("link", c.link_id, day)]
        if c.campaign_id:
            scopes += [("campaign", c.campaign_id), ("campaign", c.campaign_id, day)]
        hk = (c.link_id, hour, c.channel)
        hour_keys.add(hk)
        for s in [*scopes, ("hour", *hk)]:
            if c.is_bot:
                bots[s] += 1
            else:
                total[s] += 1
        if not c.is_bot:
            for s in scopes:
                seen[s].add(c.visitor_id)
    out = Expected()
    for s in set(total) | set(bots):
        value = (total[s], len(seen.get(s, ())), bots[s])
        if s[0] == "link" and len(s) == 2:
            out.links[s[1]] = value  # type: ignore[index]
        elif s[0] == "campaign" and len(s) == 2:
            out.campaigns[s[1]] = value  # type: ignore[index]
        elif s[0] in ("link", "campaign"):
            out.days[s] = value  # type: ignore[index]
    for hk in hour_keys:
        # An hour's uniques are the visitors first counted in it, which depends on the order the
        # counter read them: the validator checks only that a link's hours sum to its uniques.
        out.hours[hk] = (total[("hour", *hk)], 0, bots[("hour", *hk)])
    return out


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Publish `records` in order, fast: batched, acks from all replicas, awaited in windows."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        window: list[asyncio.Future[object]] = []
        for key, value in records:
            window.append(await producer.send(settings.clicks_topic, value=value, key=key))
            if len(window) >= 5_000:
                await asyncio.gather(*window)
                window = []
        await asyncio.gather(*window)
    finally:
        await producer.stop()


def counter_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    """The environment of a counter subprocess working in `settings`' schema, topics and group."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers,
        REDIS_URL=settings.redis_url.reveal(),
        POSTGRES_DSN=settings.postgres_dsn.reveal(),
        POSTGRES_SCHEMA=settings.postgres_schema,
        CLICKS_TOPIC=settings.clicks_topic,
        DLQ_TOPIC=settings.dlq_topic,
        COUNTER_GROUP=settings.counter_group,
        COUNTER_PORT=str(port),
        COUNTER_SESSION_TIMEOUT_MS="6000",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


class CounterProcess:
    """`python -m services.counter` as a child process; stopped by its pid, never by name."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env = env
        self._log = log
        self.port = int(env["COUNTER_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    async def metric(self, name: str) -> float:
        """One sample of the process's /metrics (0 when absent)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.port}/metrics") as resp,
        ):
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    async def wait_ready(self, seconds: float = 30.0) -> None:
        """Wait until /readyz answers 200."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with suppress(aiohttp.ClientError):
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{self.port}/readyz") as resp,
                ):
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"counter on port {self.port} not ready after {seconds} s")

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.counter"],
                cwd=ROOT,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last commit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL if it does not stop in `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def kafka_committed(settings: Settings) -> int:
    """The counter group's offsets committed to Kafka, summed over the partitions."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.counter_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.clicks_topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(settings.clicks_topic) or set()
        committed = [
            await consumer.committed(TopicPartition(settings.clicks_topic, p)) for p in parts
        ]
    finally:
        await consumer.stop()
    return sum(c or 0 for c in committed)


async def progress(pool: asyncpg.Pool, settings: Settings) -> int:
    """Records the counter has stored offsets past (all partitions)."""
    return sum(
        (await store.stored_offsets(pool, settings.counter_group, settings.clicks_topic)).values()
    )


async def wait_until_counted(
    pool: asyncpg.Pool, settings: Settings, records: int, seconds: float
) -> int:
    """Wait until the stored offsets cover `records`, at most `seconds`; returns the progress."""
    deadline = time.monotonic() + seconds
    done = await progress(pool, settings)
    while done < records and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        done = await progress(pool, settings)
    return done


async def validate(
    pool: asyncpg.Pool, client: aioredis.Redis, workload: Workload, *, check_redis: bool = True
) -> list[str]:
    """Every difference between what was stored and the workload's expected counts.

    Empty when Postgres (and Redis) hold exactly the counts of the distinct clicks.
    """
    problems: list[str] = []
    ids = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM processed_events")}
    counted = {click_number(i) for i in ids}
    wanted = set(range(len(workload.clicks)))
    if missing := sorted(wanted - counted):
        problems.append(f"clicks never counted ({len(missing)}): {missing[:50]}")
    if extra := sorted(counted - wanted):
        problems.append(f"clicks counted that were never sent ({len(extra)}): {extra[:50]}")
    exp = expected_counts(workload.clicks)
    pg = await stored_counts(pool)
    for name in ("links", "campaigns", "days"):
        want, got = getattr(exp, name), pg[name]
        for k in sorted(set(want) | set(got), key=str):
            if want.get(k) != got.get(k):
                problems.append(f"postgres {name} {k}: expected {want.get(k)}, found {got.get(k)}")
    for k in sorted(set(exp.hours) | set(pg["hours"]), key=str):
        w, g = exp.hours.get(k), pg["hours"].get(k)
        if w is None or g is None or (w[0], w[2]) != (g[0], g[2]):
            problems.append(f"postgres hour {k}: expected {w}, found {g}")
    unique_by_hours: dict[int, int] = defaultdict(int)
    for (link, _, _), g in pg["hours"].items():
        unique_by_hours[link] += g[1]
    for link, w in exp.links.items():
        if unique_by_hours[link] != w[1]:
            problems.append(
                f"hourly uniques of link {link} sum to {unique_by_hours[link]}, not {w[1]}"
            )
    if check_redis:
        problems += await _compare_redis(CountStore(client), exp)
    return problems


async def _compare_redis(counts: CountStore, exp: Expected) -> list[str]:
    problems = []
    wanted: list[tuple[str, int, date | None, Key]] = [
        *(("link", i, None, v) for i, v in exp.links.items()),
        *(("campaign", i, None, v) for i, v in exp.campaigns.items()),
        *((s, i, d, v) for (s, i, d), v in exp.days.items()),
    ]
    for scope, scope_id, day, value in wanted:
        got = await counts.get_counts(scope, scope_id, day)
        found = (got.total, got.unique, got.bots) if got else None
        if found != value:
            problems.append(f"redis {scope} {scope_id} {day}: expected {value}, found {found}")
    return problems


async def stored_counts(pool: asyncpg.Pool) -> dict[str, dict[object, Key]]:
    """Every counter row in Postgres, keyed like `Expected`."""
    out: dict[str, dict[object, Key]] = {}
    rows = await pool.fetch(
        "SELECT link_id, total_clicks, unique_clicks, bot_clicks FROM link_counters"
    )
    out["links"] = {r[0]: (r[1], r[2], r[3]) for r in rows}
    rows = await pool.fetch(
        "SELECT campaign_id, total_clicks, unique_clicks, bot_clicks FROM campaign_counters"
    )
    out["campaigns"] = {r[0]: (r[1], r[2], r[3]) for r in rows}
    rows = await pool.fetch(
        "SELECT scope, scope_id, day, total_clicks, unique_clicks, bot_clicks FROM daily_counters"
    )
    out["days"] = {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}
    rows = await pool.fetch(
        "SELECT link_id, hour, channel, total_clicks, unique_clicks, bot_clicks"
        " FROM hourly_counters"
    )
    out["hours"] = {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}
    return out


@dataclass
class Rig:
    """One fault test's world: its settings, Postgres pool, Redis client, logs and ports, and the
    counter processes it started (killed at the end by the `rig` fixture)."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    logs: Path
    take_port: Callable[[], int]
    processes: list[CounterProcess] = field(default_factory=list)

    async def publish(self, clicks: int, *, seed: int) -> Workload:
        """A numbered workload of `clicks` clicks (and its duplicates), published."""
        workload = make_workload(clicks, seed=seed)
        await produce(self.settings, workload.records)
        return workload

    def counter(self, name: str, **env: str) -> CounterProcess:
        """A counter process (not started) logging to `<name>.log`, on a port of its own."""
        process = CounterProcess(
            counter_env(self.settings, self.take_port(), **env), self.logs / f"{name}.log"
        )
        self.processes.append(process)
        return process

    async def progress(self) -> int:
        return await progress(self.pool, self.settings)

    async def wait_for_progress(self, beyond: int, seconds: float = 60.0) -> int:
        """Wait until the stored offsets pass `beyond` (it is counting); returns them."""
        deadline = time.monotonic() + seconds
        while True:
            done = await self.progress()
            if done > beyond or time.monotonic() > deadline:
                return done
            await asyncio.sleep(0.05)

    async def counted_exactly(self, workload: Workload, seconds: float = 240.0) -> list[str]:
        """Wait until every record is counted, then validate until it passes (Redis is written
        just after each commit) or 15 s pass; returns the problems left."""
        total = len(workload.records)
        done = await wait_until_counted(self.pool, self.settings, total, seconds)
        if done != total:
            return [f"only {done} of {total} records counted after {seconds} s"]
        deadline = time.monotonic() + 15
        while True:
            problems = await validate(self.pool, self.redis, workload)
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(0.5)

    def kill_all(self) -> None:
        for process in self.processes:
            process.kill()
