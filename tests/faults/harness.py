"""Tools of the fault tests and the benchmarks: counter subprocesses, their progress as stored
in Postgres, a load of numbered clicks on a redirector (`ClickLoad`), and the `Rig` a fault test
works in."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.counter.offsets import stored_offsets
from shared.settings import Settings
from tests.faults.validator import validate
from tests.faults.workload import Workload, make_workload, produce
from tests.helpers import seed_links

ROOT = Path(__file__).resolve().parents[2]
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"
"""A phone's user agent: the redirector counts its clicks as human."""


class ClickLoad:
    """`clients` concurrent clients clicking `code` on 127.0.0.1:`port` until `stop()`, each
    click with its number in its user agent (`<PHONE> k/<n>`, read back from the topic by
    `click_number`). `answered` holds the numbers of the clicks that got their 302, `other` the
    statuses of any other answer, `failed` counts requests that got no answer (the process was
    down), `sent` the clicks tried."""

    def __init__(self, port: int, code: str, *, clients: int = 16) -> None:
        self._url = f"http://127.0.0.1:{port}/{code}"
        self._clients = clients
        self.sent = 0
        self.answered: set[int] = set()
        self.other: list[int] = []
        self.failed = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Click until `stop()`; each request may take 5 s at most."""
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self._clients)))

    def stop(self) -> None:
        self._stop.set()

    async def _client(self, http: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            n, self.sent = self.sent, self.sent + 1
            try:
                async with http.get(
                    self._url, headers={"User-Agent": f"{PHONE} k/{n}"}, allow_redirects=False
                ) as resp:
                    await resp.read()
                    if resp.status == 302:
                        self.answered.add(n)
                    else:
                        self.other.append(resp.status)
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
                await asyncio.sleep(0.01)  # the process is down: do not spin


def click_number(user_agent: str) -> int:
    """The number `ClickLoad` gave a click, from the user agent of its event."""
    return int(user_agent.rsplit("/", 1)[1])


def counter_env(settings: Settings, port: int, **extra: str) -> dict[str, str]:
    """The environment of a counter subprocess working in `settings`' schema, topics and group."""
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        REDIS_URL=settings.redis.url.reveal(),
        POSTGRES_DSN=settings.postgres.dsn.reveal(),
        POSTGRES_SCHEMA=settings.postgres.schema,
        CLICKS_TOPIC=settings.kafka.clicks_topic,
        DLQ_TOPIC=settings.kafka.dlq_topic,
        COUNTER_GROUP=settings.counter.group,
        COUNTER_PORT=str(port),
        COUNTER_SESSION_TIMEOUT_MS="6000",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


class CounterProcess:
    """`python -m services.counter` as a child process; stopped by its pid, never by name."""

    def __init__(self, env: dict[str, str], log: Path, argv: list[str] | None = None) -> None:
        self._env = env
        self._log = log
        self._argv = argv or ["-m", "services.counter"]
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
                [sys.executable, *self._argv],
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

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def kafka_committed(settings: Settings) -> int:
    """The counter group's offsets committed to Kafka, summed over the partitions."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=settings.counter.group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(settings.kafka.clicks_topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(settings.kafka.clicks_topic) or set()
        committed = [
            await consumer.committed(TopicPartition(settings.kafka.clicks_topic, p)) for p in parts
        ]
    finally:
        await consumer.stop()
    return sum(c or 0 for c in committed)


async def read_all(settings: Settings, topic: str) -> list[bytes | None]:
    """Every record value of `topic`, from the beginning to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        values: list[bytes | None] = []
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values += [r.value for r in records]
        return values
    finally:
        await consumer.stop()


async def progress(pool: asyncpg.Pool, settings: Settings) -> int:
    """Records the counter has stored offsets past (all partitions)."""
    return sum(
        (await stored_offsets(pool, settings.counter.group, settings.kafka.clicks_topic)).values()
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

    async def publish(self, clicks: int, *, seed: int, poison: int = 0) -> Workload:
        """A numbered workload of `clicks` clicks (and its duplicates and `poison` records),
        published."""
        workload = make_workload(clicks, seed=seed, poison=poison)
        await seed_links(self.pool, workload.clicks)
        await produce(self.settings, workload.records)
        return workload

    def counter(self, name: str, argv: list[str] | None = None, **env: str) -> CounterProcess:
        """A counter process (not started) logging to `<name>.log`, on a port of its own; `argv`
        (after the interpreter) runs something else than `-m services.counter`."""
        process = CounterProcess(
            counter_env(self.settings, self.take_port(), **env), self.logs / f"{name}.log", argv
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
