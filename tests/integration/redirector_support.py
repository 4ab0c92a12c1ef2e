"""Helpers for the redirector's tests: a running redirector, its metrics, its events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.redirector.app import METRICS, create_app
from shared.settings import Settings
from tests.helpers import read_topic


@dataclass
class Running:
    """A redirector listening on 127.0.0.1: its base URL and its app."""

    url: str
    app: web.Application

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Current value of one sample of the app's registry (0 when absent)."""
        value = self.app[METRICS].registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


@asynccontextmanager
async def redirector(settings: Settings) -> AsyncIterator[Running]:
    """Start a redirector built by `create_app(settings)`; closes it (draining the sink)."""
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield Running(str(server.make_url("")).rstrip("/"), server.app)
    finally:
        await server.close()


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


async def events(settings: Settings, count: int, seconds: float = 20.0) -> list[dict[str, object]]:
    """The values of the first `count` records of the clicks topic, decoded."""
    records = await read_topic(settings, settings.clicks_topic, count, seconds)
    return [orjson.loads(r.value) for r in records]
