"""Helpers for the redirector's tests: a running redirector, its metrics, its events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import orjson

from services.redirector.app import Redirector
from shared.settings import Settings
from tests.helpers import read_topic


@dataclass
class Running:
    """A redirector listening on 127.0.0.1: its base URL and the redirector itself."""

    url: str
    redirector: Redirector

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample of the app's registry (0 when absent)."""
        value = self.redirector.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@asynccontextmanager
async def redirector(settings: Settings) -> AsyncIterator[Running]:
    """Start a redirector on a free port of 127.0.0.1; stops it (draining the sink)."""
    running = Redirector(settings)
    await running.start("127.0.0.1", 0)
    try:
        yield Running(running.url, running)
    finally:
        await running.stop()


async def readiness(app: Running) -> tuple[int, object]:
    """Status and body of the app's `/readyz`."""
    async with aiohttp.ClientSession() as http, http.get(f"{app.url}/readyz") as resp:
        return resp.status, await resp.json()


async def wait_readiness(app: Running, want: int, seconds: float = 60.0) -> int:
    """Poll `/readyz` until it answers `want` or `seconds` pass (0.1 s apart); the last status.

    The sink changes state asynchronously (a send times out, a replay ends): tests wait for the
    state, bounded, and then assert it.
    """
    deadline = time.monotonic() + seconds
    while True:
        status = (await readiness(app))[0]
        if status == want or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


async def filter_ready(app: Running, seconds: float = 10.0) -> None:
    """Wait until the app's filter of minted codes is built and subscribed (bounded)."""
    minted = app.redirector.resolver.minted
    assert minted is not None
    for _ in range(int(seconds / 0.05)):
        if minted.current:
            break
        await asyncio.sleep(0.05)
    assert minted.current, f"the filter of minted codes is not current after {seconds} s"


async def events(settings: Settings, count: int, seconds: float = 20.0) -> list[dict[str, object]]:
    """The values of the first `count` records of the clicks topic, decoded."""
    records = await read_topic(settings, settings.kafka.clicks_topic, count, seconds)
    return [orjson.loads(r.value) for r in records]
