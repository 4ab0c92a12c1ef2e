"""One organisation's heavy requests cannot starve another's: slow CSV readers hold no pool
connection, exports and batch renders are capped per organisation, a batch render takes a
bounded number of locks, the slot limit is not the caller's, and every pool has statement and
idle-in-transaction timeouts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api import export
from services.api.app import create_app
from services.api.context import POOL
from services.api.window import floor_hour
from shared import db
from shared.errors import DependencyError
from shared.links import LOCK_STRIPES
from shared.settings import Settings
from tests.integration.api_client import WHITELISTED, ApiClient

pytestmark = pytest.mark.integration

HOURS = 92 * 24  # the longest hourly window
LINKS = 60  # 60 x 2,208 rows, about 7 MB of CSV: far more than the sockets buffer
SLOW_READERS = 12


@dataclass
class Running:
    api: ApiClient
    server: TestServer
    port: int


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Start]:
    """Starts APIs on this test's schema, each with `changes` to its settings."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def run(**changes: object) -> Running:
        server = TestServer(create_app(api_settings.changed(**changes)), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        http = aiohttp.ClientSession(base_url=str(server.make_url("")))
        sessions.append(http)
        assert server.port is not None
        return Running(ApiClient(http), server, server.port)

    yield run
    for http in sessions:
        await http.close()
    for server in servers:
        await server.close()


async def fill_counters(pool: asyncpg.Pool, org_id: int, links: int, end: datetime) -> None:
    """`links` x `HOURS` hourly rows of the organisation, the last hour before `end`."""
    await pool.execute(
        """
        INSERT INTO quarter_counters (link_id, quarter, channel, org_id, total_clicks)
        SELECT 1000000 + l, $2::timestamptz - h * interval '1 hour', 'sms', $1, 3
        FROM generate_series(1, $3::int) l, generate_series(1, $4::int) h
        """,
        org_id,
        end,
        links,
        HOURS,
    )


def export_path(end: datetime, hours: int = HOURS) -> str:
    start = end - timedelta(hours=hours)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return f"/v1/report.csv?from={start:{fmt}}&to={end:{fmt}}&bucket=hour"


async def slow_reader(port: int, path: str, key: str) -> tuple[asyncio.StreamWriter, bytes]:
    """Send the request and read the first bytes of the answer, then read no more: a client
    on a bad line. Its receive buffer is small so that the server's writes block soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(20):  # the old export waited here for a pool connection
        first = await reader.read(1024)
    return writer, first


async def wait_until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> bool:
    """True as soon as `check()` is true; False after `seconds`."""
    for _ in range(int(seconds * 10)):
        if await check():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_slow_csv_readers_hold_no_connection_and_the_quiet_org_goes_on(
    start: Start, pool: asyncpg.Pool
) -> None:
    """Today's starvation: each export held a pool connection and an open transaction while
    its client read slowly; ten slow readers took the whole pool and every tenant waited."""
    running = await start(API_ORG_CONCURRENCY=SLOW_READERS)  # no cap in the way
    api = running.api
    abuser_org, abuser = await api.new_org("Abuser")
    _, quiet = await api.new_org("Quiet")
    end = floor_hour(datetime.now(UTC))
    await fill_counters(pool, abuser_org, LINKS, end)
    app_pool: asyncpg.Pool = running.server.app[POOL]
    held = [await slow_reader(running.port, export_path(end), abuser) for _ in range(SLOW_READERS)]
    try:
        assert all(first.startswith(b"HTTP/1.1 200") for _, first in held)

        async def all_released() -> bool:
            return app_pool.get_idle_size() == app_pool.get_size()

        assert await wait_until(all_released), (app_pool.get_idle_size(), app_pool.get_size())
        stalled = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'idle in transaction' AND query LIKE '%quarter_counters%'"
        )
        assert stalled == 0  # nothing holds back vacuum either
        async with asyncio.timeout(20):
            body = await api.call("GET", "/v1/campaigns", auth=quiet)
            assert body["items"] == []
            async with api.http.get(
                export_path(end, 24), headers={"Authorization": f"Bearer {quiet}"}
            ) as resp:
                assert resp.status == 200
                assert (await resp.read()).count(b"\r\n") == 1  # the header line: no clicks
    finally:
        for writer, _ in held:
            writer.close()


async def test_an_org_runs_at_most_its_cap_of_exports_and_others_go_on(
    start: Start, pool: asyncpg.Pool
) -> None:
    running = await start(API_ORG_CONCURRENCY=4)
    api = running.api
    abuser_org, abuser = await api.new_org("Abuser")
    _, quiet = await api.new_org("Quiet")
    end = floor_hour(datetime.now(UTC))
    await fill_counters(pool, abuser_org, LINKS, end)
    held = [await slow_reader(running.port, export_path(end), abuser) for _ in range(4)]
    try:
        assert all(first.startswith(b"HTTP/1.1 200") for _, first in held)
        async with api.http.get(
            export_path(end), headers={"Authorization": f"Bearer {abuser}"}
        ) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"] == "rate_limited"
        body = await api.call(
            "POST",
            "/v1/render/batch",
            auth=abuser,
            json={"template": "Hi {#var#}", "messages": [{"values": ["x"]}]},
            expect=429,
        )
        assert "API_ORG_CONCURRENCY" in body["detail"]
        # minting in bulk, a resend and a bulk erasure are heavy too: refused before any work
        for method, path in (
            ("POST", "/v1/links/1/recipients"),
            ("POST", "/v1/campaigns/1/resends"),
            ("POST", "/v1/recipients/erasures"),
        ):
            async with api.http.request(
                method, path, headers={"Authorization": f"Bearer {abuser}"}, data=b"recipient\nx"
            ) as resp:
                assert (resp.status, (await resp.json())["error"]) == (429, "rate_limited"), path
        async with api.http.get(
            export_path(end, 24), headers={"Authorization": f"Bearer {quiet}"}
        ) as resp:
            assert resp.status == 200
    finally:
        for writer, _ in held:
            writer.close()


async def test_an_export_in_small_pages_is_the_same_export(
    start: Start, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = await start()
    org_id, key = await running.api.new_org("Acme")
    end = floor_hour(datetime.now(UTC))
    await fill_counters(pool, org_id, 3, end)
    await pool.execute(  # a second channel, so that a bucket holds several rows per link
        "INSERT INTO quarter_counters (link_id, quarter, channel, org_id, total_clicks)"
        " SELECT link_id, quarter, 'whatsapp', org_id, 1 FROM quarter_counters WHERE org_id = $1",
        org_id,
    )
    headers = {"Authorization": f"Bearer {key}"}
    whole = {}
    for bucket in ("hour", "day"):
        path = export_path(end, 24 * 30).replace("bucket=hour", f"bucket={bucket}&tz=Asia/Kolkata")
        async with running.api.http.get(path, headers=headers) as resp:
            whole[bucket] = await resp.read()
    monkeypatch.setattr(export, "CHUNK_ROWS", 4)
    monkeypatch.setattr(export, "SLICE_BUCKETS", 5)
    for bucket, expected in whole.items():
        path = export_path(end, 24 * 30).replace("bucket=hour", f"bucket={bucket}&tz=Asia/Kolkata")
        async with running.api.http.get(path, headers=headers) as resp:
            assert await resp.read() == expected
    assert whole["hour"].count(b"\r\n") == 1 + 3 * 2 * 24 * 30
    # 30 days of hourly rows (each at hh:30 IST) touch 31 IST days, or 30 when the window
    # starts right after an IST midnight (from 18:30 to 19:30 UTC): count them, not the clock.
    ist = ZoneInfo("Asia/Kolkata")
    days = {(end - timedelta(hours=h)).astimezone(ist).date() for h in range(1, 24 * 30 + 1)}
    assert whole["day"].count(b"\r\n") == 1 + 3 * 2 * len(days)


@pytest.mark.timeout(600)
async def test_a_batch_of_10000_urls_holds_a_bounded_number_of_locks(
    start: Start, pool: asyncpg.Pool
) -> None:
    """Today's lock exhaustion: one advisory lock per distinct URL, all held by the batch's
    transaction: 10,000 of Postgres's shared lock table, which other connections need."""
    running = await start()
    api = running.api
    _, key = await api.new_org("Abuser", tracking=True, whitelisted=WHITELISTED)
    campaign = await api.new_campaign(key)
    messages = [
        {"recipient": f"r{i}", "values": [f"https://shop.example.in/p/{i}"]} for i in range(10_000)
    ]
    most = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not done.is_set():
            held = await pool.fetchval(
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pg_locks"
                " WHERE locktype = 'advisory' GROUP BY pid) per_backend"
            )
            most = max(most, held)
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    try:
        got = await api.call(
            "POST",
            "/v1/render/batch",
            auth=key,
            json={"template": "Offer: {#var#}", "messages": messages, "campaign_id": campaign},
        )
    finally:
        done.set()
        await watcher
    assert got["totals"]["rendered"] == 10_000, got["messages"][0]
    assert await pool.fetchval("SELECT count(*) FROM links WHERE campaign_id = $1", campaign) == (
        10_000
    )
    assert 0 < most <= LOCK_STRIPES


async def test_the_slot_limit_is_not_the_callers_to_raise(start: Start) -> None:
    running = await start()
    api = running.api
    _, key = await api.new_org("Acme")
    long_value = "x" * 100  # over the 30 characters an operator lets through
    for route, body in (
        ("/v1/render", {"template": "Hi {#var#}", "values": [long_value], "var_limit": 2000}),
        (
            "/v1/render/batch",
            {"template": "Hi {#var#}", "messages": [{"values": [long_value]}], "var_limit": 2000},
        ),
    ):
        got = await api.call("POST", route, auth=key, json=body, expect=422)
        assert got["error"] == "invalid_var_limit"
        assert got["limit"] == 30
    lower = await api.call(
        "POST",
        "/v1/render",
        auth=key,
        json={"template": "Hi {#var#}", "values": ["x" * 10], "var_limit": 5},
        expect=422,
    )
    assert lower["error"] == "var_too_long"  # lowering it is the caller's right


async def test_every_pool_bounds_statements_and_idle_transactions(settings: Settings) -> None:
    async with db.pool(settings.postgres, max_size=1) as created:
        assert await created.fetchval("SHOW statement_timeout") == "1min"
        assert await created.fetchval("SHOW idle_in_transaction_session_timeout") == "30s"
    quick = settings.changed(
        POSTGRES_STATEMENT_TIMEOUT_MS=200, POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS=300
    )
    async with db.pool(quick.postgres, max_size=1) as created:
        with pytest.raises(DependencyError, match="past its timeout"):
            with db.errors("the database is unavailable"):
                await created.execute("SELECT pg_sleep(2)")
        async with created.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("SELECT 1")
            await asyncio.sleep(1)  # idle in the transaction: Postgres ends the session
            with pytest.raises(DependencyError):
                with db.errors("the database is unavailable"):
                    await conn.execute("SELECT 1")
