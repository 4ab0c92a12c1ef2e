"""Resolution layers, negative cache, expiry and invalidation, on the real Redis and Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.link_cache import code_key, invalidate_link, link_key
from shared.links import CreatedLink, create_campaign, create_link, create_org
from shared.recipients import RecipientKeys
from shared.settings import Secret, Settings
from tests.integration.redirector_support import events, filter_ready, redirector

pytestmark = pytest.mark.integration

KEYS = RecipientKeys(b"k" * 43)

DESTINATION = "https://shop.example.in/p/42?ref=sms"
FALLBACK = "https://shop.example.in/offers-ended"
UA = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Safari/604.1"}
PG = "clicktrack_resolve_postgres_lookups_total"


@pytest.fixture
async def link(pool: asyncpg.Pool) -> CreatedLink:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Diwali", "one_time")
    return await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination=DESTINATION,
        recipients=["r1"],
        keys=KEYS,
        code_length=Settings().links.code_length,
    )


async def get(url: str) -> tuple[int, str | None, dict[str, object] | None]:
    async with (
        aiohttp.ClientSession(headers=UA) as http,
        http.get(url, allow_redirects=False) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, resp.headers.get("Location"), body


async def test_memory_then_redis_then_postgres(
    settings: Settings, link: CreatedLink, redis: aioredis.Redis, topics: list[str]
) -> None:
    code = link.codes["r1"]
    async with redirector(settings) as first:
        assert (await get(f"{first.url}/{code}"))[:2] == (302, DESTINATION)
        assert (
            first.metric(PG),
            first.metric("clicktrack_resolve_hits_total", {"layer": "postgres"}),
        ) == (1, 1)
        for _ in range(3):
            assert (await get(f"{first.url}/{code}"))[:2] == (302, DESTINATION)
        assert first.metric(PG) == 1
        assert first.metric("clicktrack_resolve_hits_total", {"layer": "memory"}) == 3
    # Postgres wrote the entries to Redis, with a TTL.
    assert 0 < await redis.ttl(code_key(code)) <= settings.redirector.redis_cache_ttl_s
    assert 0 < await redis.ttl(link_key(link.link_id)) <= settings.redirector.redis_cache_ttl_s
    async with redirector(settings) as second:  # a fresh process: empty memory, warm Redis
        assert (await get(f"{second.url}/{code}"))[:2] == (302, DESTINATION)
        assert second.metric(PG) == 0
        assert second.metric("clicktrack_resolve_hits_total", {"layer": "redis"}) == 1


async def test_unknown_codes_are_refused_by_the_filter_and_malformed_ones_never_looked_up(
    settings: Settings, link: CreatedLink, redis: aioredis.Redis, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        await filter_ready(app)
        for _ in range(3):
            status, location, body = await get(f"{app.url}/Zz9Zz9Zz9Z")
            assert (status, location, body) == (
                404,
                None,
                {"error": "not_found", "detail": "unknown link"},
            )
        assert app.metric(PG) == 0  # never minted: the filter knows without asking anyone
        assert app.metric("clicktrack_resolve_filtered_total") == 3
        for path in ("/ab", "/abc%24def", "/" + "a" * 33, "/abc-def", "/%C3%A9t%C3%A9x"):
            assert (await get(app.url + path))[0] == 404
        assert app.metric(PG) == 0
        assert app.metric("clicktrack_redirects_total", {"outcome": "malformed"}) == 5
        assert app.metric("clicktrack_resolve_misses_total", {"layer": "memory"}) == 0
        # A real code passes the filter and is found.
        assert (await get(f"{app.url}/{link.codes['r1']}"))[:2] == (302, DESTINATION)
    assert await redis.get(code_key("Zz9Zz9Zz9Z")) is None  # nothing was written for it


async def test_a_code_the_filter_lets_through_is_looked_up_once_then_remembered(
    settings: Settings, link: CreatedLink, redis: aioredis.Redis, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        await filter_ready(app)
        app.redirector.resolver.minted.announced(["Zz9Zz9Zz9Z"])  # as a false positive would
        for _ in range(3):
            assert (await get(f"{app.url}/Zz9Zz9Zz9Z"))[0] == 404
        assert app.metric(PG) == 1  # the first ask; then the negative cache answers
        assert app.metric("clicktrack_resolve_negative_hits_total") == 2
    assert await redis.get(code_key("Zz9Zz9Zz9Z")) == b"-"
    async with redirector(settings) as again:  # Redis remembers it for every process
        assert (await get(f"{again.url}/Zz9Zz9Zz9Z"))[0] == 404
        assert again.metric(PG) == 0


async def test_disabled_link_is_404_and_records_nothing(
    settings: Settings, link: CreatedLink, pool: asyncpg.Pool, topics: list[str]
) -> None:
    await pool.execute("UPDATE links SET disabled = true WHERE id = $1", link.link_id)
    async with redirector(settings) as app:
        assert (await get(f"{app.url}/{link.codes['r1']}"))[:2] == (404, None)
    assert await events(settings, 1, seconds=2) == []


async def test_expired_links_go_to_their_fallback_or_410_and_the_hit_says_so(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    with_fallback = await create_link(
        pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
    )
    without = await create_link(
        pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
    )
    past = datetime.now(UTC) - timedelta(minutes=1)
    await pool.execute(
        "UPDATE links SET expires_at = $1, fallback_url = $2 WHERE id = $3",
        past,
        FALLBACK,
        with_fallback.link_id,
    )
    await pool.execute("UPDATE links SET expires_at = $1 WHERE id = $2", past, without.link_id)
    async with redirector(settings) as app:
        assert (await get(f"{app.url}/{with_fallback.codes[None]}"))[:2] == (302, FALLBACK)
        assert await get(f"{app.url}/{without.codes[None]}") == (
            410,
            None,
            {"error": "gone", "detail": "this link has expired"},
        )
    got = {e["link_id"]: e["outcome"] for e in await events(settings, 2)}
    assert got == {with_fallback.link_id: "fallback", without.link_id: "gone"}


async def test_expiry_applies_to_a_link_already_in_memory(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    soon = await create_link(
        pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
    )
    await pool.execute(
        "UPDATE links SET expires_at = now() + interval '1 second' WHERE id = $1", soon.link_id
    )
    async with redirector(settings) as app:
        assert (await get(f"{app.url}/{soon.codes[None]}"))[0] == 302
        await asyncio.sleep(1.2)
        assert (await get(f"{app.url}/{soon.codes[None]}"))[0] == 410
        assert app.metric(PG) == 1  # the second answer came from memory


async def test_a_changed_link_reaches_every_process_through_pub_sub(
    settings: Settings,
    link: CreatedLink,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    topics: list[str],
) -> None:
    code = link.codes["r1"]
    long_ttl = settings.changed(LOCAL_CACHE_TTL_S=3600)
    other = long_ttl.changed(
        SPOOL_DIR=f"{settings.redirector.spool_dir}-2"
    )  # one spool per process
    async with redirector(long_ttl) as one, redirector(other) as two:
        for app in (one, two):
            assert (await get(f"{app.url}/{code}"))[:2] == (302, DESTINATION)
        new = "https://shop.example.in/p/43"
        await pool.execute("UPDATE links SET destination = $1 WHERE id = $2", new, link.link_id)
        await invalidate_link(redis, link.link_id)
        for app in (one, two):
            for _ in range(50):  # pub/sub delivery is asynchronous: poll, bounded (5 s)
                if app.metric("clicktrack_cache_invalidations_total") == 1:
                    break
                await asyncio.sleep(0.1)
            assert app.metric("clicktrack_cache_invalidations_total") == 1
            assert (await get(f"{app.url}/{code}"))[:2] == (302, new)
        await pool.execute("UPDATE links SET disabled = true WHERE id = $1", link.link_id)
        await invalidate_link(redis, link.link_id)
        for _ in range(50):
            if one.metric("clicktrack_cache_invalidations_total") == 2:
                break
            await asyncio.sleep(0.1)
        assert (await get(f"{one.url}/{code}"))[0] == 404


async def test_concurrent_misses_for_one_code_share_one_lookup(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        answers = await asyncio.gather(*(get(f"{app.url}/{link.codes['r1']}") for _ in range(20)))
        assert {a[:2] for a in answers} == {(302, DESTINATION)}
        assert app.metric(PG) == 1


async def test_postgres_trouble_is_a_503_with_json_not_a_crash(
    settings: Settings, link: CreatedLink, pool: asyncpg.Pool, topics: list[str]
) -> None:
    async with redirector(settings) as app:
        await pool.execute("ALTER TABLE codes RENAME TO codes_away")
        try:
            status, location, body = await get(f"{app.url}/{link.codes['r1']}")
        finally:
            await pool.execute("ALTER TABLE codes_away RENAME TO codes")
        assert (status, location) == (503, None)
        assert body == {"error": "unavailable", "detail": "try again in a moment"}
        assert (await get(f"{app.url}/{link.codes['r1']}"))[:2] == (302, DESTINATION)


async def test_a_lookup_past_its_budget_is_a_503_and_still_fills_the_caches(
    settings: Settings, link: CreatedLink, pool: asyncpg.Pool, topics: list[str]
) -> None:
    other = await create_link(
        pool,
        org_id=link.org_id,
        campaign_id=link.campaign_id,
        destination=DESTINATION,
        recipients=["r2"],
        keys=KEYS,
        code_length=Settings().links.code_length,
    )
    codes = [link.codes["r1"], link.codes["r1"], other.codes["r2"]]
    async with redirector(settings.changed(RESOLVE_BUDGET_MS=300)) as app, pool.acquire() as lock:
        tx = lock.transaction()
        await tx.start()
        await lock.execute("LOCK TABLE codes IN ACCESS EXCLUSIVE MODE")  # Postgres hangs
        try:
            answers = await asyncio.gather(*(get(f"{app.url}/{code}") for code in codes))
        finally:
            await tx.rollback()
        assert [a[0] for a in answers] == [503, 503, 503]
        assert (
            app.metric("clicktrack_resolve_dependency_errors_total", {"dependency": "budget"}) == 3
        )  # one per visitor: each has its own budget
        assert app.metric(PG) == 1  # one query for the turn's two codes, not cancelled
        for _ in range(50):  # the query ends once the lock is gone, and fills the caches
            if app.redirector.resolver.codes.get(other.codes["r2"]) is not None:
                break
            await asyncio.sleep(0.1)
        assert (await get(f"{app.url}/{other.codes['r2']}"))[:2] == (302, DESTINATION)
        assert app.metric(PG) == 1


async def test_an_expired_link_is_served_while_it_reloads_in_the_background(
    settings: Settings,
    link: CreatedLink,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    topics: list[str],
) -> None:
    """No pub/sub message: the link's memory TTL alone brings the change, and no request waits
    for the reload (the first one after expiry still gets the old value)."""
    code = link.codes["r1"]
    short_ttl = settings.changed(LOCAL_CACHE_TTL_S=1)
    async with redirector(short_ttl) as app:
        assert (await get(f"{app.url}/{code}"))[:2] == (302, DESTINATION)
        new = "https://shop.example.in/p/44"
        await pool.execute("UPDATE links SET destination = $1 WHERE id = $2", new, link.link_id)
        await redis.delete(link_key(link.link_id))  # as invalidate_link does, minus the message
        await asyncio.sleep(1.1)
        assert (await get(f"{app.url}/{code}"))[:2] == (302, DESTINATION)  # stale, reloading
        for _ in range(50):  # the reload is asynchronous: poll, bounded (5 s)
            if (await get(f"{app.url}/{code}"))[1] == new:
                break
            await asyncio.sleep(0.1)
        assert (await get(f"{app.url}/{code}"))[:2] == (302, new)
        assert app.metric("clicktrack_resolve_postgres_lookups_total") == 2  # code, then link


async def test_the_redirector_starts_and_redirects_while_redis_is_down(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    """Redis is a cache: with nothing listening at REDIS_URL, Postgres answers every code."""
    no_redis = settings.changed(REDIS_URL=Secret("redis://127.0.0.1:1/0"))
    async with redirector(no_redis) as app:
        assert (await get(f"{app.url}/{link.codes['r1']}"))[:2] == (302, DESTINATION)
        assert app.metric("clicktrack_resolve_hits_total", {"layer": "postgres"}) == 1
        assert (
            app.metric("clicktrack_resolve_dependency_errors_total", {"dependency": "redis"}) >= 1
        )
        (event,) = await events(settings, 1)
        pseudonym = KEYS.vault(link.org_id).pseudonym("r1")
        assert (event["recipient_id"], event["link_id"]) == (pseudonym, link.link_id)
