"""Reports when Kafka or Redis do not answer: still served, from Postgres, saying so."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from shared.settings import Secret, Settings
from tests.integration.reports.world import World


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def cut_off(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[str]:
    """Base URL of an API on the same Postgres whose Kafka and Redis addresses answer nothing."""
    settings = api_settings.changed(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}",
        REDIS_URL=Secret(f"redis://127.0.0.1:{closed_port()}/0"),
    )
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.integration
async def test_without_kafka_and_redis_the_report_is_served_from_postgres(
    world: World, cut_off: str
) -> None:
    headers = {"Authorization": f"Bearer {world.key}"}
    route = f"{cut_off}/v1/campaigns/{world.campaigns['A']}/report"
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(2):  # the second ask does not try Kafka again for a while
            async with http.get(route) as resp:
                assert resp.status == 200
                got = await resp.json()
            assert got["lag"]["status"] == "unknown" and got["lag"]["records"] is None
            assert got["lag"]["last_counted_at"] is not None  # read from Postgres
            assert got["totals_source"] == "postgres"
            assert {k: got["totals"][k] for k in ("total", "unique", "bots")} == {
                "total": 5,
                "unique": 3,
                "bots": 1,
            }
            assert [f["totals"]["total"] for f in got["family"]] == [5, 2]
        async with http.get(f"{cut_off}/v1/campaigns/{world.campaigns['A']}/report.csv") as resp:
            assert resp.status == 200
            assert resp.headers["X-Clicktrack-Lag"] == "unknown"
            assert resp.headers["X-Clicktrack-Lag-Records"] == ""
            assert len((await resp.text()).splitlines()) == 4
