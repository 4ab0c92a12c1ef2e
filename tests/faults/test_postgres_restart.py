"""Postgres restarted under a running counter: it waits, retries, and ends exact.

The test runs its own Postgres (127.0.0.1:25432, data in a temporary folder, started and stopped
with deploy/stack.sh, which reuses the shared Kafka and Redis); the shared Postgres is never
touched.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared import db
from shared.settings import Secret, Settings
from tests.faults.harness import (
    ROOT,
    CounterProcess,
    counter_env,
    make_workload,
    produce,
    wait_until_counted,
)
from tests.faults.test_counter_faults import exact_after_convergence, metric, wait_for_progress

pytestmark = [pytest.mark.integration, pytest.mark.faults]

DEDICATED_DSN = "postgresql://clicktrack:clicktrack@127.0.0.1:25432/clicktrack"


def stack(action: str, folder: Path) -> None:
    """`deploy/stack.sh up|down` for the dedicated Postgres whose files live in `folder`."""
    env = dict(os.environ, STACK_DIR=str(folder), POSTGRES_DSN=DEDICATED_DSN)
    done = subprocess.run(
        ["bash", "deploy/stack.sh", action],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"stack.sh {action} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def dedicated_postgres(tmp_path: Path) -> Iterator[Path]:
    """A Postgres of this test's own on 127.0.0.1:25432; stopped (by its pid file) at the end."""
    folder = tmp_path / "stack"
    stack("up", folder)
    try:
        yield folder
    finally:
        stack("down", folder)


@pytest.fixture
async def dedicated(
    fault_settings: Settings, dedicated_postgres: Path
) -> AsyncIterator[tuple[Settings, Path]]:
    settings = replace(fault_settings, postgres_dsn=Secret(DEDICATED_DSN))
    async with db.pool(settings, max_size=1) as created, created.acquire() as conn:
        await db.migrate(conn, settings.postgres_schema)
    yield settings, dedicated_postgres


@pytest.mark.timeout(300)
async def test_postgres_restarted_mid_run_the_counter_waits_and_ends_exact(
    dedicated: tuple[Settings, Path],
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> None:
    s, folder = dedicated
    workload = make_workload(30_000, seed=11)
    await produce(s, workload.records)
    port = next_port()
    counter = CounterProcess(counter_env(s, port), logs / "counter.log")
    try:
        counter.start()
        async with db.pool(s, max_size=1) as pool:
            await wait_for_progress(pool, s, len(workload.records) // 4)
        stack("down", folder)
        await asyncio.sleep(3)  # the counter fails batches and retries meanwhile
        assert counter.running
        stack("up", folder)
        async with db.pool(s, max_size=2) as pool:
            done = await wait_until_counted(pool, s, len(workload.records), seconds=180)
            assert done == len(workload.records)
            assert await exact_after_convergence(pool, redis, workload) == []
        assert await metric(port, "clicktrack_batch_failures_total") > 0
        assert counter.terminate() == 0
    finally:
        counter.kill()
