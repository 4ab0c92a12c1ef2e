"""A flood of random codes of a valid shape (never minted) against the real redirector, Redis and
Postgres, while real codes are tapped beside it: Postgres sees at most about one query per
1,000 random codes (the filter's false positives), and every real code is served."""

from __future__ import annotations

import asyncio
import random
import string

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.link_cache import cache_codes
from shared.settings import Settings
from tests.integration.redirector_support import filter_ready, redirector
from tests.integration.test_redirector_fresh import DESTINATION, mint_codes, new_link, tap_all

pytestmark = pytest.mark.integration

FLOOD = 5_000
REAL = 500
PG = "clicktrack_resolve_postgres_lookups_total"


@pytest.mark.timeout(180)
async def test_a_random_code_flood_costs_postgres_nothing_and_real_codes_are_served(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    topics: list[str],
    fault_rng: random.Random,
) -> None:
    link_id = await new_link(pool)
    rows = await mint_codes(pool, link_id, REAL)
    await cache_codes(redis, rows, settings.links.code_cache_ttl_s)  # as the API does
    alphabet = string.ascii_letters + string.digits
    flood = ["".join(fault_rng.choices(alphabet, k=10)) for _ in range(FLOOD)]
    async with redirector(settings) as app:
        await filter_ready(app)
        real, refused = await asyncio.gather(
            tap_all(app, [row[0] for row in rows]), tap_all(app, flood)
        )
        queries = app.metric(PG)
        filtered = app.metric("clicktrack_resolve_filtered_total")
    print(f"flood of {FLOOD} random codes: {queries:.0f} Postgres queries, {filtered:.0f} filtered")
    assert real == [(302, DESTINATION)] * REAL
    assert [status for status, _ in refused] == [404] * FLOOD
    # 0.1% false positives: 5 expected; each one is a query (then remembered as unknown).
    assert queries <= FLOOD / 1000 * 3
    assert filtered >= FLOOD - queries
