"""The demo `make up` ends with: clicks through the real redirector, counted by the real counter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from shared import db
from shared.counts import CountStore
from shared.link_cache import cache_codes
from shared.links import create_campaign, create_link, create_org
from shared.orgs import set_time_zone
from shared.redis_client import redis_client
from shared.settings import Settings

DESTINATION = "https://example.com/offers/diwali?utm_source=sms"
DEMO_TIME_ZONE = "Asia/Kolkata"


async def run_demo(settings: Settings, wait_s: float, say: Callable[[str], None]) -> bool:
    """True when Postgres and Redis both show total=3, unique=2 within `wait_s` seconds."""
    async with (
        db.pool(settings.postgres, max_size=2) as pool,
        redis_client(settings.redis) as redis,
    ):
        org_id = await create_org(pool, "Demo Retail", tracking=True)
        await set_time_zone(pool, org_id, DEMO_TIME_ZONE)  # an Indian sender: days in IST
        campaign_id = await create_campaign(pool, org_id, "Diwali sale", "one_time")
        created = await create_link(
            pool,
            org_id=org_id,
            campaign_id=campaign_id,
            destination=DESTINATION,
            code_length=settings.links.code_length,
        )
        await cache_codes(redis, created.code_rows(), settings.links.code_cache_ttl_s)
        short_url = f"{settings.links.short_base_url}/{created.codes[None]}"
        say(f"demo: link {created.link_id} {short_url} -> {DESTINATION}")
        for visitor, clicks in (("Alice's phone", 2), ("Bob's phone", 1)):
            jar = aiohttp.CookieJar(unsafe=True)  # keep cookies for a bare IP host too
            headers = {"User-Agent": f"Demo/{visitor}"}
            async with aiohttp.ClientSession(headers=headers, cookie_jar=jar) as http:
                for _ in range(clicks):
                    async with http.get(short_url, allow_redirects=False) as resp:
                        where = resp.headers.get("Location")
                        say(f"demo: {visitor} tapped it: {resp.status} -> {where}")
        store = CountStore(redis)
        deadline = time.monotonic() + wait_s
        while True:
            row = await pool.fetchrow(
                "SELECT total_clicks, unique_clicks FROM link_counters WHERE link_id = $1",
                created.link_id,
            )
            cached = await store.get(created.link_id)
            pg = (row["total_clicks"], row["unique_clicks"]) if row else (0, 0)
            rd = (cached.total, cached.unique) if cached else (0, 0)
            if pg == rd == (3, 2) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        say(f"demo: postgres total={pg[0]} unique={pg[1]}; redis total={rd[0]} unique={rd[1]}")
        ok = pg == rd == (3, 2)
        say(
            "demo: counted, as expected (3 clicks, 2 visitors)"
            if ok
            else "demo: counts did not arrive in time; see .stack/logs/counter.log"
        )
        return ok
