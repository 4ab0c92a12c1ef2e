"""The counter under faults, as separate processes on the real Kafka, Redis and Postgres.

Each test publishes a numbered workload (duplicates and bots included), runs `python -m
services.counter` subprocesses against it, breaks something mid-run, and then checks that
Postgres and Redis hold exactly the counts of the distinct clicks (`harness.validate` names any
missing or extra click). FAULT_EVENTS (default 100,000) and FAULT_KILLS (default 10) size the
kill -9 test; `bench/counter --soak` runs a bigger profile.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.settings import Settings
from tests.faults.harness import (
    CounterProcess,
    counter_env,
    kafka_committed,
    make_workload,
    produce,
    progress,
    validate,
    wait_until_counted,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

EVENTS = int(os.environ.get("FAULT_EVENTS", "100000"))
KILLS = int(os.environ.get("FAULT_KILLS", "10"))


async def wait_for_progress(
    pool: asyncpg.Pool, settings: Settings, beyond: int, seconds: float = 60.0
) -> int:
    """Wait until the stored offsets pass `beyond` (the counter is counting); returns them."""
    deadline = time.monotonic() + seconds
    while True:
        done = await progress(pool, settings)
        if done > beyond or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.05)


async def exact_after_convergence(
    pool: asyncpg.Pool, redis: aioredis.Redis, workload: object, seconds: float = 15.0
) -> list[str]:
    """Validate until it passes or `seconds` pass: Redis is written just after each commit."""
    deadline = time.monotonic() + seconds
    while True:
        problems = await validate(pool, redis, workload)  # type: ignore[arg-type]
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(0.5)


async def metric(port: int, name: str) -> float:
    """One sample of a counter subprocess's /metrics (0 when absent)."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def wait_healthy(port: int, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/readyz") as resp,
            ):
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"counter on port {port} not ready after {seconds} s")


@pytest.mark.timeout(600)
async def test_kill_9_at_random_moments_leaves_exact_counts(
    fault_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> None:
    s = fault_settings
    workload = make_workload(EVENTS)
    await produce(s, workload.records)
    # A static member id, as a deployment with stable process names has: the restarted process
    # takes its partitions back at once instead of after the session timeout.
    counter = CounterProcess(
        counter_env(s, next_port(), COUNTER_INSTANCE_ID="kill9"), logs / "counter.log"
    )
    rng = random.Random()
    mid_run = 0
    try:
        for _ in range(KILLS):
            before = await progress(pool, s)
            counter.start()
            if before < len(workload.records):
                await wait_for_progress(pool, s, before)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            mid_run += await progress(pool, s) < len(workload.records)
            counter.kill()
        counter.start()
        done = await wait_until_counted(pool, s, len(workload.records), seconds=240)
        assert done == len(workload.records)
        problems = await exact_after_convergence(pool, redis, workload)
        print(
            f"kill -9 test: {len(workload.clicks)} clicks, {workload.duplicates} duplicates,"
            f" {KILLS} kills ({mid_run} while counting), problems: {len(problems)}"
        )
        assert problems == []
        assert mid_run >= KILLS - 3  # nearly every kill landed while it was counting
        assert counter.terminate() == 0
    finally:
        counter.kill()


@pytest.mark.timeout(300)
async def test_two_counters_one_killed_and_restarted_stay_exact(
    fault_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> None:
    s = fault_settings
    workload = make_workload(30_000, seed=7)
    await produce(s, workload.records)
    port_a, port_b = next_port(), next_port()
    a = CounterProcess(counter_env(s, port_a), logs / "a.log")
    b = CounterProcess(counter_env(s, port_b), logs / "b.log")
    try:
        a.start()
        b.start()
        await wait_healthy(port_b)
        await wait_for_progress(pool, s, len(workload.records) // 4)
        a.kill()  # its partitions move to b after the session timeout: a rebalance
        await asyncio.sleep(random.uniform(0.0, 1.0))
        a.start()  # and a new member joins: another rebalance
        done = await wait_until_counted(pool, s, len(workload.records), seconds=180)
        assert done == len(workload.records)
        assert await exact_after_convergence(pool, redis, workload) == []
        assert await metric(port_b, "clicktrack_events_counted_total") > 0
        assert a.terminate() == 0
        assert b.terminate() == 0
    finally:
        a.kill()
        b.kill()


@pytest.mark.timeout(300)
async def test_redis_flushed_mid_run_converges_to_postgres(
    fault_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> None:
    s = fault_settings
    workload = make_workload(30_000, seed=8)
    await produce(s, workload.records)
    port = next_port()
    counter = CounterProcess(counter_env(s, port), logs / "counter.log")
    try:
        counter.start()
        await wait_for_progress(pool, s, len(workload.records) // 3)
        await redis.flushdb()
        done = await wait_until_counted(pool, s, len(workload.records), seconds=180)
        assert done == len(workload.records)
        assert await exact_after_convergence(pool, redis, workload) == []
        # once at start (Redis was empty) and once after the flush
        assert await metric(port, "clicktrack_redis_rebuilds_total") == 2
        assert counter.terminate() == 0
    finally:
        counter.kill()


@pytest.mark.timeout(300)
async def test_sigterm_commits_the_last_batch(
    fault_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> None:
    s = fault_settings
    workload = make_workload(20_000, seed=9)
    await produce(s, workload.records)
    port = next_port()
    counter = CounterProcess(counter_env(s, port), logs / "counter.log")
    restarted = CounterProcess(counter_env(s, port), logs / "restarted.log")
    try:
        counter.start()
        await wait_for_progress(pool, s, 0)
        assert counter.terminate() == 0
        stopped_at = await progress(pool, s)
        assert 0 < stopped_at
        # the last batch read is in Postgres, and its offsets went to Kafka (advisory) as well
        assert await kafka_committed(s) == stopped_at
        restarted.start()
        done = await wait_until_counted(pool, s, len(workload.records), seconds=120)
        assert done == len(workload.records)
        assert await exact_after_convergence(pool, redis, workload) == []
        assert restarted.terminate() == 0
    finally:
        counter.kill()
        restarted.kill()
