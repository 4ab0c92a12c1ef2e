"""Fixtures of the fault tests: topics with six partitions, health ports from the reserved range,
and the log folder of the counter subprocesses (printed when a test fails)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.kafka import ensure_topics
from shared.settings import Settings
from tests.faults.harness import Rig

PORTS = itertools.count(18100)
"""Health ports of counter subprocesses: 18100-18199 are reserved for these tests."""


@pytest.fixture
async def fault_settings(settings: Settings) -> Settings:
    """This test's settings with six-partition topics, created."""
    wider = replace(settings, topic_partitions=6)
    await ensure_topics(wider)
    return wider


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
    return report
