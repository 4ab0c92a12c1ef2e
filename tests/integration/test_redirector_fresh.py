"""Fresh codes: the first tap of a code minted in bulk, on the real Redis and Postgres.

Codes cached at minting (`cache_codes`, as the API and the CLI do) cost one Redis read and no
Postgres query; codes only in Postgres are looked up together (one query per loop turn, not one
per request); random codes are refused by the filter of minted codes without any lookup.
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.link_cache import CodeRow, cache_codes, code_key
from shared.links import create_org
from shared.minting import mint
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.integration.redirector_support import Running, filter_ready, redirector

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"
UA = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1"}
PG = "clicktrack_resolve_postgres_lookups_total"
CODES = 300


async def new_link(pool: asyncpg.Pool) -> int:
    org_id = await create_org(pool, "Acme", tracking=True)
    link_id: int = await pool.fetchval(
        "INSERT INTO links (org_id, destination) VALUES ($1, $2) RETURNING id", org_id, DESTINATION
    )
    return link_id


async def mint_codes(pool: asyncpg.Pool, link_id: int, count: int) -> list[CodeRow]:
    """`count` codes of recipients on the link, as the API mints and caches them."""
    settings = Settings()
    async with pool.acquire() as conn:
        org_id = await conn.fetchval("SELECT org_id FROM links WHERE id = $1", link_id)
        vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
        recipients = [f"p{i}" for i in range(count)]
        got = await mint(conn, link_id, recipients, length=settings.links.code_length, vault=vault)
    return got.code_rows(link_id)


async def tap_all(app: Running, codes: list[str]) -> list[tuple[int, str | None]]:
    """Each code once, all at once (100 connections)."""
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(headers=UA, connector=connector) as http:

        async def one(code: str) -> tuple[int, str | None]:
            async with http.get(f"{app.url}/{code}", allow_redirects=False) as resp:
                return resp.status, resp.headers.get("Location")

        return await asyncio.gather(*(one(c) for c in codes))


async def test_codes_cached_at_minting_cost_one_redis_read_and_no_postgres_query(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> None:
    link_id = await new_link(pool)
    async with redirector(settings) as app:
        await filter_ready(app)
        rows = await mint_codes(pool, link_id, CODES)  # minted while the redirector runs
        await cache_codes(redis, rows, settings.links.code_cache_ttl_s)
        for _ in range(100):  # the announcement travels from Postgres (NOTIFY at commit)
            if all(row[0] in app.redirector.resolver.minted for row in rows):
                break
            await asyncio.sleep(0.05)
        answers = await tap_all(app, [row[0] for row in rows])
        assert answers == [(302, DESTINATION)] * CODES
        # No code was looked up in Postgres; the link was, once (then it is in memory).
        assert app.metric(PG) == 1
        assert app.metric("clicktrack_resolve_hits_total", {"layer": "redis"}) == CODES
        assert app.metric("clicktrack_resolve_hits_total", {"layer": "postgres"}) == 0
        assert app.metric("clicktrack_resolve_filtered_total") == 0
        assert app.metric("clicktrack_events_logged_total") == CODES
    ttl = await redis.ttl(code_key(rows[0][0]))
    assert 0 < ttl <= settings.links.code_cache_ttl_s


async def test_codes_only_in_postgres_are_looked_up_together_and_cached_after(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> None:
    link_id = await new_link(pool)
    rows = await mint_codes(pool, link_id, CODES)  # not cached: Postgres alone knows them
    async with redirector(settings) as app:
        await filter_ready(app)  # built from Postgres: it knows them
        answers = await tap_all(app, [row[0] for row in rows])
        assert answers == [(302, DESTINATION)] * CODES
        assert app.metric("clicktrack_resolve_hits_total", {"layer": "postgres"}) == CODES
        queries = app.metric(PG)
        print(f"{CODES} fresh codes, {queries:.0f} Postgres queries")
        assert 1 <= queries <= CODES / 5  # gathered per loop turn, not one per request
    # Written back to Redis after the answers (the 302s did not wait for it).
    cached = await redis.mget([code_key(row[0]) for row in rows])
    assert sum(v is not None for v in cached) == CODES


def mint_elsewhere(settings: Settings, link_id: int, recipient: str) -> str:
    """One code minted and committed on another thread's connection while this event loop is
    blocked, as another process (the API) does it: the loop has read nothing since, so the
    announcement of the code is at best in a socket buffer."""
    got: list[str] = []

    async def mint_one() -> None:
        conn = await asyncpg.connect(
            settings.postgres.dsn.reveal(),
            server_settings={"search_path": settings.postgres.schema},
        )
        try:
            vault = RecipientKeys(settings.api.recipient_key).vault(
                await conn.fetchval("SELECT org_id FROM links WHERE id = $1", link_id)
            )
            minted = await mint(
                conn, link_id, [recipient], length=settings.links.code_length, vault=vault
            )
            got.extend(row[0] for row in minted.code_rows(link_id))
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(mint_one(),))
    thread.start()
    thread.join()  # blocks the loop on purpose
    (code,) = got
    return code


async def test_a_code_tapped_as_its_minting_commits_is_not_refused(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> None:
    """The sender may have the link before this process has heard of the code: a filter miss
    waits for one sync of the listening connection, which delivers the announcement first."""
    rounds = 30
    link_id = await new_link(pool)
    async with redirector(settings) as app:
        await filter_ready(app)
        resolver = app.redirector.resolver
        assert resolver.minted is not None
        for n in range(rounds):
            code = mint_elsewhere(settings, link_id, f"r{n}")
            assert code not in resolver.minted  # the tap comes before the announcement
            found = await resolver.resolve(code)
            assert (found.outcome, found.location) == ("redirect", DESTINATION)
        assert app.metric("clicktrack_resolve_heard_late_total") == rounds
        assert app.metric("clicktrack_resolve_filtered_total") == 0
        assert app.metric("clicktrack_minted_filter_syncs_total") == rounds
        # Over HTTP as well; a code never minted is still refused by the filter, after a sync.
        code = mint_elsewhere(settings, link_id, "over-http")
        assert await tap_all(app, [code, "Zz9Zz9Zz9Z"]) == [(302, DESTINATION), (404, None)]
        assert app.metric("clicktrack_resolve_filtered_total") == 1
        # One query for each minted code (its link read with it), none for the random one.
        assert app.metric("clicktrack_resolve_postgres_lookups_total") == rounds + 1


async def test_the_filter_hears_every_code_committed_before_a_settle(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> None:
    link_id = await new_link(pool)
    rounds = 30
    async with redirector(settings) as app:
        await filter_ready(app)
        minted = app.redirector.resolver.minted
        assert minted is not None
        syncs = minted.syncs
        for n in range(rounds):
            code = mint_elsewhere(settings, link_id, f"r{n}")
            assert code not in minted  # the loop has not read the announcement
            await minted.settle()
            assert code in minted
        assert minted.syncs - syncs == rounds  # one sync each
        # A flood of misses shares syncs: 500 settles at once cost one query.
        before = minted.syncs
        await asyncio.gather(*(minted.settle() for _ in range(500)))
        assert minted.syncs - before == 1
