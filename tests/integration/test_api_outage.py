"""The API while Postgres is unreachable: clear 503s, never a crash or a hang, and recovery.

Postgres itself is shared with other test runs, so the outage is made by a TCP proxy between the
API and Postgres (port 18201) that drops every connection and refuses new ones, then comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from shared.settings import Secret, Settings
from tests.integration.api_client import OPERATOR_TOKEN, ApiClient

pytestmark = pytest.mark.integration

PROXY_PORT = 18201


class Proxy:
    """A TCP proxy to `upstream` that can be cut (connections dropped, new ones refused)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", PROXY_PORT)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.writers.clear()
        self.tasks.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


@pytest.fixture
async def proxied(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Proxy, ApiClient]]:
    dsn = urlsplit(settings.postgres.dsn.reveal())
    proxy = Proxy((dsn.hostname or "127.0.0.1", dsn.port or 5432))
    await proxy.start()
    through = dsn._replace(netloc=f"{dsn.username}:{dsn.password}@127.0.0.1:{PROXY_PORT}")
    api_settings = settings.changed(
        POSTGRES_DSN=Secret(through.geturl()),
        OPERATOR_TOKEN=Secret(OPERATOR_TOKEN),
        SHORT_DOMAIN="s.ex.in",
    )
    server = TestServer(create_app(api_settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(
            base_url=str(server.make_url("")), timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            yield proxy, ApiClient(http)
    finally:
        await server.close()
        await proxy.cut()


async def test_postgres_outage_gives_503s_and_the_api_recovers(
    proxied: tuple[Proxy, ApiClient], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, api = proxied
    org_id, key = await api.new_org("Acme")
    await proxy.cut()

    # A failure logs the route template, never the path: this one carries a phone number.
    phone = "+919812345678"
    with caplog.at_level(logging.DEBUG):
        await api.call(
            "DELETE", "/v1/recipients/{recipient}", auth=key, expect=503, recipient=phone
        )
    logged = [r for r in caplog.records if r.name.startswith("services.api")]
    # the failure (errors.py) and the request (app.py), each with the template
    assert [r.__dict__.get("route") for r in logged] == ["/v1/recipients/{recipient}"] * 2
    assert not any(phone[3:] in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)

    async with api.http.get("/readyz") as resp:
        assert (resp.status, await resp.json()) == (
            503,
            {"status": "degraded", "postgres": "failing"},
        )
    for _ in range(3):  # pooled connections are dead, and new ones are refused
        got = await api.call("GET", "/v1/campaigns", auth=key, expect=503)
        assert got == {"error": "dependency_unavailable", "detail": "the database is unavailable"}
    got = await api.call("POST", "/v1/orgs", auth=OPERATOR_TOKEN, json={"name": "B"}, expect=503)
    assert got["error"] == "dependency_unavailable"
    async with api.http.get("/healthz") as resp:  # alive, just not ready
        assert resp.status == 200

    await proxy.start()
    async with api.http.get("/readyz") as resp:
        assert resp.status == 200
    created = await api.call(
        "POST", "/v1/campaigns", auth=key, json={"name": "After", "kind": "one_time"}, expect=201
    )
    assert created["org_id"] == org_id
