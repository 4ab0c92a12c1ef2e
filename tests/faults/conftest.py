"""Fixtures of the fault tests: topics with six partitions, health ports from the reserved range,
the log folder of the counter subprocesses (printed when a test fails), and the seed of each
test's random schedule.

Every test collected here carries the `faults` marker (`-m "not faults"` leaves them out). Kill
times and other random choices come from `fault_rng`, seeded from FAULT_SEED (a fresh random
seed when unset) and the test's id; a failed test's report shows the seed and the command that
replays it.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.faults.harness import Rig

HERE = Path(__file__).parent
FAULT_SEED = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
"""The session's seed (FAULT_SEED, else a fresh one): with the test id, it fixes each test's
random schedule."""
PORTS = itertools.count(18100)
"""Health ports of counter subprocesses: 18100-18199 are reserved for these tests."""


@pytest.fixture
async def fault_settings(settings: Settings) -> Settings:
    """This test's settings with six-partition topics, created."""
    wider = settings.changed(TOPIC_PARTITIONS=6)
    await ensure_topics(wider.kafka)
    return wider


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def fault_rng(request: pytest.FixtureRequest) -> random.Random:
    """This test's source of random schedules: the same for the same FAULT_SEED and test id,
    whatever else runs; a failed test's report names the seed."""
    request.node.user_properties.append(("fault_seed", FAULT_SEED))
    return random.Random(f"{FAULT_SEED}:{request.node.nodeid}")


@pytest.fixture
def next_port() -> Iterator[Callable[[], int]]:
    def take() -> int:
        port = next(PORTS)
        assert port < 18200, "ran out of reserved health ports"
        return port

    yield take


@pytest.fixture
async def rig(
    fault_settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    next_port: Callable[[], int],
    logs: Path,
) -> AsyncIterator[Rig]:
    """This test's `Rig`; every counter process it started is killed at the end."""
    made = Rig(fault_settings, pool, redis, logs, next_port)
    try:
        yield made
    finally:
        made.kill_all()


@pytest.fixture
def logs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where the counter subprocesses write; their tails are printed if the test fails."""
    yield tmp_path
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for log in sorted(tmp_path.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-40:]
            print(f"---- {log.name} (last {len(lines)} lines) ----", *lines, sep="\n")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed and ("fault_seed", FAULT_SEED) in item.user_properties:
        replay = f"FAULT_SEED={FAULT_SEED} pytest '{item.nodeid}'"
        report.sections.append(("fault seed", f"seed {FAULT_SEED}; replay with: {replay}"))
    return report
