"""Chaos soak of the whole pipeline: every click answered 302 is counted exactly once.

On a stack of its own (Kafka, Redis and Postgres on their own ports and data folder, so nothing
else is disturbed), it runs the real redirector and counter as processes, drives the redirector
with numbered clicks (`clicktrack loadgen`'s engine) and, meanwhile, injects in turn: kill -9 of
the counter (several times), SIGSTOP of the broker for longer than the consumer session timeout,
a broker restart, a Redis restart with its data gone, a Postgres restart, and a redirector restart
(SIGTERM). Then it waits for the counter to catch up and compares, link by link, the clicks
answered 302 with the counts in Postgres and in Redis, naming any click lost or counted twice.

The last line printed is one JSON object:
  clicks_sent, clicks_302, faults, lost_pg, double_pg, lost_redis, double_redis, ...
Exit status 0 only when nothing was lost or double-counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.outcome import finish
from services.cli.loadgen import Outcome, Plan, click_number, run
from shared import db
from shared.counts import CountStore
from shared.kafka import ensure_topics
from shared.links import create_campaign, create_link, create_org
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The virtualenv running this benchmark (its python starts the services)."""
PY = str(BIN / "python")


@dataclass(frozen=True)
class Profile:
    clicks: int
    rate: float
    links: int
    visitors: int
    counter_kills: int
    stop_seconds: float


PROFILES = {
    "short": Profile(
        clicks=7200, rate=60.0, links=4, visitors=300, counter_kills=3, stop_seconds=14
    ),
    "long": Profile(
        clicks=60000, rate=150.0, links=20, visitors=5000, counter_kills=10, stop_seconds=20
    ),
}

# Below 32768: ports in the ephemeral range (32768-60999) can be taken by any outgoing connection.
FAULT_GAP_S = 3.0
PORTS = {"kafka": 22092, "redis": 22379, "postgres": 22432, "redirector": 22080, "counter": 22081}


def log(message: str) -> None:
    print(f"chaos: {message}", file=sys.stderr, flush=True)


class Stack:
    """Kafka, Redis and Postgres of the soak's own, managed through deploy/stack.sh."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {
            **os.environ,
            "STACK_DIR": str(folder),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
            "REDIS_URL": f"redis://127.0.0.1:{PORTS['redis']}/0",
            "POSTGRES_DSN": f"postgresql://clicktrack:clicktrack@127.0.0.1:{PORTS['postgres']}/clicktrack",
        }

    def script(self, *command: str, timeout_s: float = 300) -> str:
        """Run `deploy/stack.sh COMMAND...` for this stack; its standard output."""
        done = subprocess.run(
            ["bash", str(ROOT / "deploy" / "stack.sh"), *command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"stack.sh {' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def pid(self, service: str) -> int:
        """The pid of `service` as the stack recorded it (`stack.sh pid`), not recomputed here:
        Postgres's data folder may live outside STACK_DIR (its `location` file says where)."""
        return int(self.script("pid", service, timeout_s=60).split()[-1])


class Process:
    """One of our services run as `python -m services.<name>`."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name, self.env, self.logs = name, env, logs
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, port: int) -> None:
        with (self.logs / f"{self.name}.log").open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                PY, "-m", f"services.{self.name}", env=self.env, stdout=out, stderr=out, cwd=ROOT
            )
        await wait_http(f"http://127.0.0.1:{port}/readyz", 60, self)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self, seconds: float) -> int:
        """Wait for the process to exit; SIGKILL it after `seconds`."""
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), seconds)
        except TimeoutError:
            self.proc.kill()
            return await self.proc.wait()


async def wait_http(url: str, seconds: float, proc: Process | None = None) -> None:
    import aiohttp

    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and not proc.running:
                raise RuntimeError(f"{url}: {proc.name} exited; see {proc.logs}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {seconds} s")


async def wait_until(probe: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await probe():
            return True
        await asyncio.sleep(0.5)
    return False


class Soak:
    def __init__(self, profile: Profile, folder: Path) -> None:
        self.profile = profile
        self.stack = Stack(folder)
        self.settings = Settings.from_env(self.stack.env).changed(
            REDIRECTOR_PORT=PORTS["redirector"],
            COUNTER_PORT=PORTS["counter"],
        )
        service_env = {
            **self.stack.env,
            "REDIRECTOR_PORT": str(PORTS["redirector"]),
            "REDIRECTOR_METRICS_PORT": "0",
            "COUNTER_PORT": str(PORTS["counter"]),
            "LOG_LEVEL": "WARNING",
            "SPOOL_DIR": str(folder / "spool"),  # not the spool of a `make up` redirector
            # the key the load generator signs its visitors' cookies with
            "VISITOR_HASH_KEY": self.settings.redirector.visitor_hash_key.reveal(),
        }
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.counter = Process("counter", service_env, logs)
        self.redirector = Process("redirector", service_env, logs)
        self.faults: list[str] = []

    async def fault_counter_kill(self) -> None:
        self.counter.signal(signal.SIGKILL)
        await self.counter.wait(10)
        await self.counter.start(PORTS["counter"])

    async def fault_broker_pause(self) -> None:
        pid = self.stack.pid("kafka")
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(self.profile.stop_seconds)
        os.kill(pid, signal.SIGCONT)

    async def fault_broker_restart(self) -> None:
        pid = self.stack.pid("kafka")
        os.kill(pid, signal.SIGTERM)
        await wait_until(lambda: _gone(pid), 60)
        await asyncio.to_thread(self.stack.script, "up")

    async def fault_redis_wipe(self) -> None:
        pid = self.stack.pid("redis")
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: _gone(pid), 20)
        for leftover in ("appendonlydir", "dump.rdb"):
            target = self.stack.folder / "redis" / leftover
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
                missing_ok=True
            )
        await asyncio.to_thread(self.stack.script, "up")

    async def fault_postgres_restart(self) -> None:
        pid = self.stack.pid("postgres")
        os.kill(pid, signal.SIGINT)  # fast shutdown: open transactions are rolled back
        await wait_until(lambda: _gone(pid), 60)
        await asyncio.sleep(2)
        await asyncio.to_thread(self.stack.script, "up")

    async def fault_redirector_restart(self) -> None:
        self.redirector.signal(signal.SIGTERM)
        await self.redirector.wait(60)
        await self.redirector.start(PORTS["redirector"])

    async def inject(self, load: asyncio.Task[Outcome]) -> None:
        p = self.profile
        schedule: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        kills = [("counter kill -9", self.fault_counter_kill)] * p.counter_kills
        others = [
            ("broker SIGSTOP", self.fault_broker_pause),
            ("broker restart", self.fault_broker_restart),
            ("redis restart, data gone", self.fault_redis_wipe),
            ("postgres restart", self.fault_postgres_restart),
            ("redirector restart (SIGTERM)", self.fault_redirector_restart),
        ]
        # Interleave the kills with the other faults.
        while kills or others:
            if kills:
                schedule.append(kills.pop())
            if others:
                schedule.append(others.pop(0))
        for name, fault in schedule:
            await asyncio.sleep(FAULT_GAP_S)
            log(f"fault: {name}{'' if not load.done() else ' (after the load ended)'}")
            started = time.monotonic()
            await fault()
            self.faults.append(name)
            log(f"fault: {name} done in {time.monotonic() - started:.1f} s")

    async def run(self) -> dict[str, object]:
        p = self.profile
        log(f"starting a stack of its own in {self.stack.folder}")
        await asyncio.to_thread(self.stack.script, "up")
        async with db.pool(self.settings.postgres, max_size=2) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, self.settings.postgres.schema)
            await ensure_topics(self.settings.kafka)
            org = await create_org(pool, "Chaos Ltd", tracking=True)
            campaign = await create_campaign(pool, org, "Soak", "one_time")
            links = [
                await create_link(
                    pool,
                    org_id=org,
                    campaign_id=campaign,
                    destination=f"https://example.com/{i}",
                    code_length=self.settings.links.code_length,
                )
                for i in range(p.links)
            ]
        code_link = {link.codes[None]: link.link_id for link in links}
        await self.counter.start(PORTS["counter"])
        await self.redirector.start(PORTS["redirector"])
        plan = Plan(
            base_url=f"http://127.0.0.1:{PORTS['redirector']}",
            codes=list(code_link),
            clicks=p.clicks,
            visitors=p.visitors,
            rate=p.rate,
            max_seconds=p.clicks / p.rate * 3,
            visitor_key=self.settings.redirector.visitor_hash_key.reveal().encode(),
        )
        started = time.monotonic()
        load = asyncio.create_task(run(plan))
        await self.inject(load)
        outcome = await load
        log(
            f"load done: {len(outcome.answered)} of {p.clicks} answered 302"
            f" in {outcome.seconds:.0f} s"
        )
        self.redirector.signal(signal.SIGTERM)  # drain the queue, flush (and replay) before exit
        await self.redirector.wait(120)
        result = await self.validate(outcome, code_link)
        self.counter.signal(signal.SIGTERM)
        await self.counter.wait(60)
        result["seconds"] = round(time.monotonic() - started, 1)
        return result

    async def validate(self, outcome: Outcome, code_link: dict[str, int]) -> dict[str, object]:
        s = self.settings
        expected = outcome.expected()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka.bootstrap_servers, enable_auto_commit=False
        )
        await consumer.start()
        async with db.pool(s.postgres, max_size=2) as pool:
            caught_up = await wait_until(lambda: self._caught_up(pool, consumer), 300)
            counted_ids = {
                str(r[0]) for r in await pool.fetch("SELECT event_id FROM processed_events")
            }
            pg = {
                r["link_id"]: (r["total_clicks"], r["unique_clicks"])
                for r in await pool.fetch(
                    "SELECT link_id, total_clicks, unique_clicks FROM link_counters"
                )
            }
            redis = aioredis.Redis.from_url(s.redis.url.reveal())
            store = CountStore(redis)

            async def redis_agrees() -> bool:
                for link_id in code_link.values():
                    got = await store.get(link_id)
                    value = (got.total, got.unique) if got else (0, 0)
                    if value != pg.get(link_id, (0, 0)):
                        return False
                return True

            await wait_until(redis_agrees, 60)
            rd: dict[int, tuple[int, int]] = {}
            for link_id in code_link.values():
                got = await store.get(link_id)
                rd[link_id] = (got.total, got.unique) if got else (0, 0)
            await redis.aclose()

        try:
            numbers_counted = await self._numbers_counted(consumer, counted_ids)
        finally:
            await consumer.stop()
        answered = set(outcome.answered)
        lost_numbers = sorted(answered - numbers_counted)
        extra_numbers = sorted(numbers_counted - answered)
        lost_pg = double_pg = lost_redis = double_redis = unique_off_pg = unique_off_redis = 0
        for code, link_id in code_link.items():
            want_total, want_unique = expected.get(code, (0, 0))
            got_total, got_unique = pg.get(link_id, (0, 0))
            lost_pg += max(0, want_total - got_total)
            double_pg += max(0, got_total - want_total)
            unique_off_pg += abs(got_unique - want_unique)
            r_total, r_unique = rd[link_id]
            lost_redis += max(0, want_total - r_total)
            double_redis += max(0, r_total - want_total)
            unique_off_redis += abs(r_unique - want_unique)
        if lost_numbers:
            log(f"clicks answered 302 but never counted: {lost_numbers[:100]}")
        if extra_numbers:
            log(f"clicks counted that were not answered 302: {extra_numbers[:100]}")
        return {
            "caught_up": caught_up,
            "clicks_sent": self.profile.clicks,
            "clicks_302": len(answered),
            "clicks_not_answered": len(outcome.failed),
            "faults": len(self.faults),
            "fault_list": self.faults,
            "lost_pg": lost_pg,
            "double_pg": double_pg,
            "lost_redis": lost_redis,
            "double_redis": double_redis,
            "unique_mismatch_pg": unique_off_pg,
            "unique_mismatch_redis": unique_off_redis,
            "lost_click_numbers": lost_numbers[:100],
            "extra_click_numbers": extra_numbers[:100],
        }

    async def _caught_up(self, pool: asyncpg.Pool, consumer: AIOKafkaConsumer) -> bool:
        """True when the offsets stored with the counts reach the end of every partition."""
        s = self.settings
        stored = {
            r["partition"]: r["next_offset"]
            for r in await pool.fetch(
                "SELECT partition, next_offset FROM consumer_offsets"
                " WHERE group_id = $1 AND topic = $2",
                s.counter.group,
                s.kafka.clicks_topic,
            )
        }
        ends = await consumer.end_offsets(self._partitions(consumer))
        return all(stored.get(tp.partition, 0) >= end for tp, end in ends.items())

    def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        # The soak created the topic (ensure_topics), so its partition count is known.
        topic = self.settings.kafka.clicks_topic
        return [TopicPartition(topic, p) for p in range(self.settings.kafka.topic_partitions)]

    async def _numbers_counted(self, consumer: AIOKafkaConsumer, counted_ids: set[str]) -> set[int]:
        """Click numbers of the events Postgres counted, read back from the topic."""
        parts = self._partitions(consumer)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        numbers: set[int] = set()
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    event = orjson.loads(r.value)
                    n = click_number(event.get("user_agent"))
                    if n is not None and event["event_id"] in counted_ids:
                        numbers.add(n)
        return numbers


def _gone_sync(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith(("Z", "X"))
    except FileNotFoundError:
        return True


async def _gone(pid: int) -> bool:
    return _gone_sync(pid)


CHECKED = (
    "lost_pg",
    "double_pg",
    "lost_redis",
    "double_redis",
    "unique_mismatch_pg",
    "unique_mismatch_redis",
)


async def run_profile(args: argparse.Namespace) -> dict[str, Any]:
    """Run the profile on a stack of its own and return its report."""
    folder = ROOT / ".stack" / f"chaos-{args.profile}"
    shutil.rmtree(folder, ignore_errors=True)
    soak = Soak(PROFILES[args.profile], folder)
    try:
        result = await soak.run()
    finally:
        for proc in (soak.redirector, soak.counter):
            if proc.running:
                proc.signal(signal.SIGKILL)
                await proc.wait(10)
        # purge, not down: Postgres's data may live in /var/tmp, outside the folder removed below
        await asyncio.to_thread(
            subprocess.run,
            ["bash", str(ROOT / "deploy" / "stack.sh"), "down" if args.keep else "purge"],
            env=soak.stack.env,
            capture_output=True,
            timeout=180,
        )
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result["profile"] = args.profile
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument(
        "--keep", action="store_true", help="leave the soak's stack folder for reading"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {}

    def measure() -> dict[str, Any]:
        result.update(asyncio.run(run_profile(args)))
        return result

    if finish("chaos", measure) != 0:
        return 1
    ok = all(result[k] == 0 for k in CHECKED)
    return 0 if ok and result["caught_up"] else 1


if __name__ == "__main__":
    sys.exit(main())
