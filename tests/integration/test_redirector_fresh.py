"""Fresh codes: the first tap of a code minted in bulk, on the real Redis and Postgres.

Codes cached at minting (`cache_codes`, as the API and the CLI do) cost one Redis read and no
Postgres query; codes only in Postgres are looked up together (one query per loop turn, not one
per request); random codes are refused by the filter of minted codes without any lookup.
"""

from __future__ import annotations

import asyncio

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
