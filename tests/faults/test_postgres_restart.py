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
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared import db
from shared.settings import Secret, Settings
from tests.faults.harness import ROOT, Rig

pytestmark = pytest.mark.integration

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
    """A Postgres of this test's own on 127.0.0.1:25432; stopped (by its pid file) and its data
    deleted at the end (it may live in /var/tmp, where the postgres user can reach it)."""
    folder = tmp_path / "stack"
    stack("up", folder)
    try:
        yield folder
    finally:
        stack("purge", folder)


@pytest.fixture
async def dedicated_rig(
    fault_settings: Settings,
    dedicated_postgres: Path,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> AsyncIterator[Rig]:
    """A `Rig` whose Postgres is the dedicated one (migrated); its counters killed at the end."""
    settings = fault_settings.changed(POSTGRES_DSN=Secret(DEDICATED_DSN))
    async with db.pool(settings.postgres, max_size=2) as pool:
        async with pool.acquire() as conn:
            await db.migrate(conn, settings.postgres.schema)
        made = Rig(settings, pool, redis, logs, next_port)
        try:
            yield made
        finally:
            made.kill_all()


@pytest.mark.timeout(300)
async def test_postgres_restarted_mid_run_the_counter_waits_and_ends_exact(
    dedicated_rig: Rig, dedicated_postgres: Path
) -> None:
    rig = dedicated_rig
    workload = await rig.publish(30_000, seed=11)
    counter = rig.counter("counter", COUNTER_BATCH_MAX_RECORDS="1000")  # still counting at the stop
    counter.start()
    await rig.wait_for_progress(len(workload.records) // 4)
    stack("down", dedicated_postgres)
    await asyncio.sleep(3)  # the counter fails batches and retries meanwhile
    assert counter.running
    stack("up", dedicated_postgres)
    await rig.pool.expire_connections()  # the test's own connections died with the server
    assert await rig.counted_exactly(workload) == []
    assert await counter.metric("clicktrack_batch_failures_total") > 0
    assert counter.terminate() == 0
