"""The tracking switch holds everywhere: with an organisation's tracking off, every route that
would create a tracked link or mint a code answers 409, rendering passes links through, and the
running redirector stops serving the organisation's codes (fallback or 404, no click event)
within seconds; switched back on, they redirect again. Each switch is in the audit trail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from services.redirector.app import Redirector
from shared.settings import Settings
from tests.integration.api_client import LONG_URL, OPERATOR_TOKEN, TEMPLATE, ApiClient
from tests.integration.redirector_support import events

pytestmark = pytest.mark.integration

FALLBACK = "https://shop.example.in/closed"
SENT_AS_IS = "shop.example.in/x"
"""A link short enough for a {#var#} slot without shortening (tracking off)."""


async def answer(url: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location")


async def until(url: str, want: tuple[int, str | None]) -> tuple[int, str | None]:
    """The answer once it is `want`, or the last one after 5 s (pub/sub is asynchronous)."""
    for _ in range(50):
        got = await answer(url)
        if got == want:
            return got
        await asyncio.sleep(0.1)
    return await answer(url)


async def switch(api: ApiClient, org_id: int, enabled: bool, ticket: str) -> Any:
    return await api.call(
        "PUT", "/v1/orgs/{org_id}/link-tracking", auth=OPERATOR_TOKEN,
        json={"enabled": enabled, "ticket": ticket}, org_id=org_id,
    )  # fmt: skip


@pytest.fixture
async def running(settings: Settings, pool: object, topics: object) -> Any:
    app = Redirector(settings)
    await app.start("127.0.0.1", 0)
    yield app
    await app.stop()


async def test_tracking_off_refuses_every_minting_route_and_stops_redirects(
    api: ApiClient, running: Redirector, settings: Settings, pool: asyncpg.Pool
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=("shop.example.in/",))
    campaign = await api.new_campaign(key)
    plain = await api.new_link(key, campaign, LONG_URL)
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    with_fallback = await api.call(
        "POST", "/v1/campaigns/{campaign_id}/links", auth=key, expect=201,
        json={"destination": LONG_URL + "&b=1", "expires_at": later, "fallback_url": FALLBACK},
        campaign_id=campaign,
    )  # fmt: skip
    codes = []
    for link_id in (plain, with_fallback["id"]):
        minted = await api.call(
            "POST", "/v1/links/{link_id}/recipients", auth=key,
            json={"recipients": ["+919800000001"]}, link_id=link_id,
        )  # fmt: skip
        codes.append(minted["codes"][0]["code"])
    first, second = (f"{running.url}/{code}" for code in codes)
    assert await answer(first) == (302, LONG_URL)
    assert await answer(second) == (302, LONG_URL + "&b=1")

    off = await switch(api, org_id, False, "SUP-10")
    assert off["link_tracking_enabled"] is False
    refused = [
        await api.call(
            "POST", "/v1/campaigns/{campaign_id}/links", auth=key, expect=409,
            json={"destination": "https://b.example/"}, campaign_id=campaign,
        ),
        await api.call(
            "POST", "/v1/links/{link_id}/recipients", auth=key, expect=409,
            json={"recipients": ["+919800000002"]}, link_id=plain,
        ),
    ]  # fmt: skip
    assert [r["error"] for r in refused] == ["tracking_disabled"] * 2
    stored = "SELECT count(*) FROM {} WHERE {} = $1"
    assert await pool.fetchval(stored.format("links", "org_id"), org_id) == 2
    assert await pool.fetchval(stored.format("codes", "link_id"), plain) == 1
    rendered = await api.render(
        key, campaign_id=campaign, recipient="+919800000002", template=TEMPLATE,
        values=["Asha", SENT_AS_IS],
    )  # fmt: skip
    assert rendered["tracking"]["enabled"] is False
    assert rendered["values"] == ["Asha", SENT_AS_IS] and rendered["links"][0]["code"] is None

    # the redirector follows within seconds: the fallback, else 404; no click event
    assert await until(first, (404, None)) == (404, None)
    assert await until(second, (302, FALLBACK)) == (302, FALLBACK)
    off_answers = running.metrics.registry.get_sample_value(
        "clicktrack_redirects_total", {"outcome": "tracking_off"}
    )
    assert off_answers is not None and off_answers >= 2

    await switch(api, org_id, True, "SUP-11")
    assert await until(first, (302, LONG_URL)) == (302, LONG_URL)
    assert await until(second, (302, LONG_URL + "&b=1")) == (302, LONG_URL + "&b=1")
    # two clicks before the switch, two after: the answers while off published nothing
    published = await events(settings, 5, seconds=3.0)
    assert sorted(e["outcome"] for e in published) == ["redirect"] * 4, published

    audit = await api.call("GET", "/v1/audit?org_id={org_id}", auth=OPERATOR_TOKEN, org_id=org_id)
    assert [(e["action"], e["ticket"], e["operator"]) for e in audit["items"]] == [
        ("org.created", None, "api-operator"),
        ("whitelist.added", None, "api-operator"),
        ("tracking.enabled", None, "api-operator"),
        ("key.issued", None, "api-operator"),
        ("tracking.disabled", "SUP-10", "api-operator"),
        ("tracking.enabled", "SUP-11", "api-operator"),
    ]


async def test_a_batch_with_tracking_off_leaves_links_alone(api: ApiClient) -> None:
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=("shop.example.in/",))
    campaign = await api.new_campaign(key)
    await switch(api, org_id, False, "SUP-12")
    batch = await api.call(
        "POST", "/v1/render/batch", auth=key,
        json={"template": TEMPLATE, "campaign_id": campaign,
              "messages": [{"recipient": "+919800000001", "values": ["Asha", SENT_AS_IS]}]},
    )  # fmt: skip
    assert batch["tracking"]["enabled"] is False
    assert batch["messages"][0]["text"].endswith(f"{SENT_AS_IS} Valid till Sunday. -ACME")
