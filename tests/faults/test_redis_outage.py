"""Redis dies under the redirector: known codes keep coming from memory, new ones from Postgres;
Redis comes back with older data under the counter: its counters are rebuilt from Postgres.

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
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared import events as event_contract
from shared.counts import MARKER_KEY, CountStore
from shared.links import create_link, create_org
from shared.settings import Secret, Settings
from tests.helpers import pg_counts, redis_counts, wait_for
from tests.integration.redirector_support import events, redirector
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

PORT = 18090
DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"


async def start_redis(directory: Path) -> asyncio.subprocess.Process:
    """A redis-server of this test's own on `PORT`, its files in `directory` (a snapshot there
    is loaded at start), accepting connections (bounded wait: 10 s)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make stack-up installs it)", pytrace=False)
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port", str(PORT), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
            return proc
        except OSError:
            await asyncio.sleep(0.1)
    proc.kill()
    await proc.wait()
    pytest.fail(f"redis-server did not listen on {PORT} within 10 s", pytrace=False)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await start_redis(tmp_path)
    try:
        yield proc
    finally:
        await stop(proc)


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


async def test_a_redis_restarted_with_older_data_is_rebuilt_from_postgres(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    """Redis killed and started again from a snapshot older than its last writes (as after a
    crash with `appendfsync everysec`, a failover or a restore): the marker survives, so it
    does not look empty, but counters are behind Postgres, and must not stay so."""
    org_id = await create_org(pool, "Acme", tracking=True)
    a, b = [
        await create_link(
            pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
        )
        for _ in range(2)
    ]
    on_own_redis = settings.changed(REDIS_URL=Secret(f"redis://127.0.0.1:{PORT}/0"))
    proc = await start_redis(tmp_path)
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{PORT}/0")
    counter = Counter(on_own_redis)
    await counter.start()

    async def clicks(link_id: int, visitors: range) -> None:
        for v in visitors:
            event = make_event(
                link_id=link_id, org_id=org_id, campaign_id=None, campaign_kind=None,
                visitor_id=f"v:{v}",
            )  # fmt: skip
            await producer.send_and_wait(settings.kafka.clicks_topic, event_contract.encode(event))

    async def in_redis(link_id: int) -> tuple[int, int, int]:
        return await redis_counts(CountStore(client), link_id)

    try:
        await clicks(a.link_id, range(3))
        assert await wait_for(lambda: in_redis(a.link_id), (3, 3, 0)) == (3, 3, 0)
        await client.save()  # the snapshot the restart loads: link a at 3 clicks
        await clicks(a.link_id, range(3, 8))
        assert await wait_for(lambda: in_redis(a.link_id), (8, 8, 0)) == (8, 8, 0)
        await clicks(b.link_id, range(2))  # the last batches: b's
        assert await wait_for(lambda: in_redis(b.link_id), (2, 2, 0)) == (2, 2, 0)
        await stop(proc)
        proc = await start_redis(tmp_path)
        await client.aclose()
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{PORT}/0")
        assert await client.exists(MARKER_KEY)  # it does not look empty
        assert await in_redis(a.link_id) == (3, 3, 0)  # but a is behind
        # The counter heals it: here its next command fails on the dead connection and it reads
        # its batches again; had it not noticed, its check (CHECK_S, 5 s) finds a marker of
        # another Redis process and rebuilds (tests/integration/test_counter.py).
        got = await wait_for(lambda: in_redis(a.link_id), (8, 8, 0), seconds=30)
        assert got == (8, 8, 0) == await pg_counts(pool, a.link_id)
        assert await in_redis(b.link_id) == (2, 2, 0)
    finally:
        await counter.stop()
        await client.aclose()
        await stop(proc)
