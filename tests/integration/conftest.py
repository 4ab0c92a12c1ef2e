"""Fixtures of the links API tests: the API on a test server, and a client checking its answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from services.api.context import METRICS_SITE
from shared.settings import Secret, Settings
from tests.integration.api_client import OPERATOR_TOKEN, SHORT_DOMAIN, ApiClient
from tests.integration.test_relay import Receiver


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """Settings with an operator token and a short domain of 7 characters, and a Redis budget
    that a loaded test machine does not exceed (a report must not fall back to Postgres by
    accident; the fallback has tests of its own, with Redis unreachable)."""
    return settings.changed(
        OPERATOR_TOKEN=Secret(OPERATOR_TOKEN), SHORT_DOMAIN=SHORT_DOMAIN, API_REDIS_BUDGET_MS=5000
    )


@pytest.fixture
async def api(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[ApiClient]:
    """A client of the API running on this test's schema."""
    server = TestServer(create_app(api_settings), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url(""))
    async with aiohttp.ClientSession(base_url=url) as http:
        yield ApiClient(http, server.app[METRICS_SITE].url, url)
    await server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A webhook receiver on a free port of 127.0.0.1 (`Receiver`), and its base URL."""
    state = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", state.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield state, str(server.make_url("")).rstrip("/")
    await server.close()
