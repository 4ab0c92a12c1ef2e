"""The whole path on real services: HTTP click -> redirector -> Kafka -> counter -> PG + Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from services.counter.counter import Counter
from services.redirector.visitors import COOKIE_NAME
from shared.counts import CountStore
from shared.links import create_campaign, create_link, create_org
from shared.settings import Settings
from tests.helpers import pg_counts, redis_counts, wait_for

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/sale?utm_source=sms"


@pytest.fixture
async def counter(
    settings: Settings, pool: asyncpg.Pool, topics: list[str]
) -> AsyncIterator[Counter]:
    running = Counter(settings)
    await running.start()
    yield running
    await running.stop()


async def test_two_visitors_three_clicks_count_total_3_unique_2(
    redirector_url: str, counter: Counter, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Diwali", "one_time")
    link = await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination=DESTINATION,
        code_length=Settings().links.code_length,
    )
    url = f"{redirector_url}/{link.codes[None]}"

    # unsafe=True: aiohttp keeps no cookies for bare IP hosts such as 127.0.0.1 otherwise
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(headers={"User-Agent": "PhoneA/1.0"}, cookie_jar=jar) as alice:
        first = await alice.get(url, allow_redirects=False)
        assert first.status == 302
        assert first.headers["Location"] == DESTINATION
        assert COOKIE_NAME in first.cookies
        second = await alice.get(url, allow_redirects=False)
        assert second.status == 302
        assert COOKIE_NAME not in second.cookies  # the cookie came back: same visitor
    async with aiohttp.ClientSession(headers={"User-Agent": "PhoneB/2.0"}) as bob:
        third = await bob.get(url, allow_redirects=False)
        assert third.status == 302
        assert third.headers["Location"] == DESTINATION

    store = CountStore(redis)
    assert await wait_for(lambda: pg_counts(pool, link.link_id), (3, 2, 0)) == (3, 2, 0)
    assert await wait_for(lambda: redis_counts(store, link.link_id), (3, 2, 0)) == (3, 2, 0)
    assert counter.registry.get_sample_value("clicktrack_events_counted_total") == 3
