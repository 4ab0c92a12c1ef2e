"""The redirector against real Postgres, Redis and Kafka."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
import asyncpg
import jsonschema
import orjson
import pytest

from services.redirector.visitors import COOKIE_NAME
from shared.links import CreatedLink, create_campaign, create_link, create_org
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.helpers import read_topic
from tests.integration.redirector_support import redirector

pytestmark = pytest.mark.integration

KEYS = RecipientKeys(b"k" * 43)

DESTINATION = "https://shop.example.in/p/42?ref=sms"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"User-Agent": "TestPhone/1.0"}) as session:
        yield session


@pytest.fixture
async def link(pool: asyncpg.Pool) -> CreatedLink:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Coupon ends", "coupon_expiry_reminder")
    return await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination=DESTINATION,
        recipients=["cust-1", "cust-2"],
        keys=KEYS,
        code_length=Settings().links.code_length,
    )


async def test_redirects_and_publishes_one_event_per_click(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    code = link.codes["cust-1"]
    async with http.get(f"{redirector_url}/{code}", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == DESTINATION
        assert resp.headers["Cache-Control"] == "private, no-store"
        assert COOKIE_NAME not in resp.cookies  # the recipient identifies the visitor

    records = await read_topic(settings, settings.kafka.clicks_topic, 1)
    assert len(records) == 1
    assert records[0].key == code.encode()
    body = orjson.loads(records[0].value)
    schema = json.loads((resources.files("shared") / "schemas" / "click_event.v1.json").read_text())
    jsonschema.validate(body, schema)
    assert {k: body[k] for k in ("code", "link_id", "org_id", "campaign_id", "campaign_kind")} == {
        "code": code,
        "link_id": link.link_id,
        "org_id": link.org_id,
        "campaign_id": link.campaign_id,
        "campaign_kind": "coupon_expiry_reminder",
    }
    pseudonym = KEYS.vault(link.org_id).pseudonym("cust-1")  # never the id itself
    assert body["visitor_id"] == f"r:{pseudonym}"
    assert body["recipient_id"] == pseudonym
    assert body["ip"] == "127.0.0.0"
    assert body["user_agent"] == "TestPhone/1.0"
    assert (body["is_bot"], body["bot_reason"], body["channel"]) == (False, None, "sms")


async def test_head_is_redirected_but_flagged_as_bot(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession, settings: Settings
) -> None:
    async with http.head(f"{redirector_url}/{link.codes['cust-2']}", allow_redirects=False) as resp:
        assert resp.status == 302
    (record,) = await read_topic(settings, settings.kafka.clicks_topic, 1)
    body = orjson.loads(record.value)
    assert (body["is_bot"], body["bot_reason"]) == (True, "head")


@pytest.mark.parametrize("path", ["/Zz9Zz9Zz9Z", "/ab", "/abc%24def", "/" + "a" * 40])
async def test_unknown_or_impossible_codes_are_404(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(redirector_url + path, allow_redirects=False) as resp:
        assert resp.status == 404
        assert "Location" not in resp.headers


async def test_disabled_link_is_404(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    await pool.execute("UPDATE links SET disabled = true WHERE id = $1", link.link_id)
    async with http.get(f"{redirector_url}/{link.codes['cust-1']}", allow_redirects=False) as resp:
        assert resp.status == 404


async def test_only_get_and_head(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{redirector_url}/{link.codes['cust-1']}", allow_redirects=False) as resp:
        assert resp.status == 405


async def test_health_ready_and_metrics(
    link: CreatedLink, redirector_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{redirector_url}/{link.codes['cust-1']}", allow_redirects=False) as resp:
        assert resp.status == 302
    async with http.get(f"{redirector_url}/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    async with http.get(f"{redirector_url}/readyz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok", "sink": "ok"})
    async with http.get(f"{redirector_url}/metrics", allow_redirects=False) as resp:
        assert resp.status == 404  # not on the public port: see test_metrics_have_their_own_port


async def test_metrics_have_their_own_port(
    settings: Settings, http: aiohttp.ClientSession, link: CreatedLink
) -> None:
    async with redirector(settings) as app:
        assert app.redirector.metrics_url != app.url
        async with http.get(f"{app.url}/{link.codes['cust-1']}", allow_redirects=False) as resp:
            assert resp.status == 302
        async with http.get(f"{app.redirector.metrics_url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        async with http.get(f"{app.redirector.metrics_url}/{link.codes['cust-1']}") as resp:
            assert resp.status == 404  # the metrics address redirects nothing
    assert 'clicktrack_redirects_total{outcome="redirected"} 1.0' in text
    assert 'clicktrack_http_requests_total{status="302"} 1.0' in text
