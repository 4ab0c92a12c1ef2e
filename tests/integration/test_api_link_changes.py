"""Changing a link whose codes are already out: the API validates the change and every running
redirector follows it at once (Redis entry dropped, pub/sub message), without a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tests.integration.api_client import ApiClient

pytestmark = pytest.mark.integration

ROUTE = "/v1/links/{link_id}"
FIRST = "https://shop.example.in/sale"
FIXED = "https://shop.example.in/sale-2026"


async def status_and_location(url: str) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.get("Location")


async def until(url: str, want: tuple[int, str | None]) -> tuple[int, str | None]:
    """The redirector's answer once it is `want`, or the last one after 5 s (pub/sub is async)."""
    for _ in range(50):
        got = await status_and_location(url)
        if got == want:
            return got
        await asyncio.sleep(0.1)
    return await status_and_location(url)


async def test_a_sent_link_is_fixed_disabled_and_given_an_expiry(
    api: ApiClient, redirector_url: str
) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    link_id = await api.new_link(key, await api.new_campaign(key), FIRST)
    minted = await api.call(
        "POST",
        "/v1/links/{link_id}/recipients",
        auth=key,
        json={"recipients": ["+919800000001"]},
        link_id=link_id,
    )
    short = f"{redirector_url}/{minted['codes'][0]['code']}"
    assert await status_and_location(short) == (302, FIRST)  # now cached in memory and Redis

    changed = await api.call("PATCH", ROUTE, auth=key, json={"destination": FIXED}, link_id=link_id)
    assert (changed["destination"], changed["disabled"]) == (FIXED, False)
    assert await until(short, (302, FIXED)) == (302, FIXED)

    await api.call("PATCH", ROUTE, auth=key, json={"disabled": True}, link_id=link_id)
    assert await until(short, (404, None)) == (404, None)

    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    back = await api.call(
        "PATCH",
        ROUTE,
        auth=key,
        json={"disabled": False, "expires_at": later, "fallback_url": "https://shop.example.in/"},
        link_id=link_id,
    )
    assert datetime.fromisoformat(back["expires_at"]) == datetime.fromisoformat(later)
    assert back["fallback_url"] == "https://shop.example.in/"
    assert await until(short, (302, FIXED)) == (302, FIXED)
    cleared = await api.call(
        "PATCH",
        ROUTE,
        auth=key,
        json={"expires_at": None, "fallback_url": None, "destination": None},
        link_id=link_id,
    )
    assert (cleared["expires_at"], cleared["fallback_url"], cleared["destination"]) == (
        None,
        None,
        FIXED,
    )
    assert await api.call("GET", ROUTE, auth=key, link_id=link_id) == cleared


async def test_bad_changes_are_refused_and_change_nothing(api: ApiClient) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    link_id = await api.new_link(key, await api.new_campaign(key), FIRST)
    link = await api.call("GET", ROUTE, auth=key, link_id=link_id)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = [
        ({}, "invalid_change"),
        ({"destination": None}, "invalid_change"),
        ({"destination": "javascript:alert(1)"}, "invalid_destination"),
        ({"destination": "https://x.example/" + "a" * 2048}, "invalid_destination"),
        ({"destination": 42}, "invalid_field"),
        ({"disabled": "yes"}, "invalid_field"),
        ({"expires_at": past}, "invalid_expiry"),
        ({"expires_at": "9999-12-31T23:59:59-12:00"}, "invalid_expiry"),
        ({"expires_at": "tomorrow"}, "invalid_field"),
        ({"fallback_url": "ftp://x.example/"}, "invalid_fallback"),
        ({"code": "AbC"}, "unknown_field"),
    ]
    for body, error in refused:
        got = await api.call("PATCH", ROUTE, auth=key, json=body, expect=422, link_id=link_id)
        assert got["error"] == error, (body, got)
    assert await api.call("GET", ROUTE, auth=key, link_id=link_id) == link
    _, other = await api.new_org("Other")
    await api.call("PATCH", ROUTE, auth=other, json={"disabled": True}, expect=404, link_id=link_id)
    assert (await api.call("GET", ROUTE, auth=key, link_id=link_id))["disabled"] is False
