"""Helpers for the redirector's tests: a running redirector, its metrics, its events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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


async def events(settings: Settings, count: int, seconds: float = 20.0) -> list[dict[str, object]]:
    """The values of the first `count` records of the clicks topic, decoded."""
    records = await read_topic(settings, settings.clicks_topic, count, seconds)
    return [orjson.loads(r.value) for r in records]
