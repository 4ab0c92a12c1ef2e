"""Redis dies under the redirector: known codes keep coming from memory, new ones from Postgres.

Runs a redis-server of the test's own on port 18090 (never the shared one) and kills it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared.links import create_link, create_org
from shared.settings import Secret, Settings
from tests.integration.redirector_support import events, redirector

pytestmark = pytest.mark.integration

PORT = 18090
DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make stack-up installs it)", pytrace=False)
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it accepts connections, bounded (10 s)
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_redirects_survive_a_redis_outage(
    settings: Settings,
    pool: asyncpg.Pool,
    topics: list[str],
    own_redis: asyncio.subprocess.Process,
) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    warm = (
        await create_link(
            pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
        )
    ).codes[None]
    cold = (
        await create_link(
            pool,
            org_id=org_id,
            destination=DESTINATION + "&b",
            code_length=settings.links.code_length,
        )
    ).codes[None]
    on_own_redis = settings.changed(REDIS_URL=Secret(f"redis://127.0.0.1:{PORT}/0"))
    async with redirector(on_own_redis) as app, aiohttp.ClientSession() as http:

        async def get(code: str) -> tuple[int, str | None]:
            async with http.get(
                f"{app.url}/{code}", headers={"User-Agent": PHONE}, allow_redirects=False
            ) as resp:
                return resp.status, resp.headers.get("Location")

        assert await get(warm) == (302, DESTINATION)
        own_redis.kill()
        await own_redis.wait()
        assert await get(warm) == (302, DESTINATION)  # from memory
        assert await get(cold) == (302, DESTINATION + "&b")  # Redis fails, Postgres answers
        assert await get("Zz9Zz9Zz9Z") == (404, None)
        assert app.metric("clicktrack_resolve_dependency_errors_total", {"dependency": "redis"}) > 0
        assert app.metric("clicktrack_resolve_hits_total", {"layer": "postgres"}) == 2
    assert len(await events(settings, 3)) == 3
