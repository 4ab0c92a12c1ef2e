"""`POST /v1/render/batch`: one template for many recipients, codes minted in bulk, a refused
message answered in its place without minting anything."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.integration.api_client import SHORT_DOMAIN, WHITELISTED, ApiClient

pytestmark = pytest.mark.integration

TEMPLATE = "Dear {#var#}, your coupon ends today: {#var#} -ACME"
SHOP = "https://shop.example.in/coupons?utm_source=sms"
HELP = "https://help.example.in/faq"


async def setup(api: ApiClient, *, tracking: bool) -> tuple[str, int]:
    _, key = await api.new_org("Acme", tracking=tracking, whitelisted=WHITELISTED)
    created = await api.call(
        "POST",
        "/v1/campaigns",
        auth=key,
        json={"name": "Coupons", "kind": "coupon_expiry_reminder"},
        expect=201,
    )
    return key, created["id"]


async def batch(api: ApiClient, key: str, **body: object) -> dict[str, object]:
    result: dict[str, object] = await api.call("POST", "/v1/render/batch", auth=key, json=body)
    return result


async def test_a_batch_mints_one_code_per_recipient_and_link_and_reports_refusals(
    api: ApiClient, pool: asyncpg.Pool, api_settings: Settings
) -> None:
    key, cid = await setup(api, tracking=True)
    messages = [
        {"recipient": "r1", "values": ["Asha", SHOP]},
        {"recipient": "r2", "values": ["Ravi", f"Use {SHOP} or {HELP}"]},  # 44 characters short
        {"recipient": "r2", "values": ["Ravi", HELP]},
        {"recipient": "r1", "values": ["Asha", HELP]},
        {"recipient": "r3", "values": ["Meena"]},  # one value for two slots
        {"recipient": "r3", "values": ["Meena", "see https://shop.example.in/x y"]},
    ]
    got = await batch(api, key, template=TEMPLATE, messages=messages, campaign_id=cid)
    assert got["totals"] == {
        "messages": 6,
        "rendered": 4,
        "refused": 2,
        "segments": 4,
        "original_segments": 4,
    }
    out = got["messages"]
    assert isinstance(out, list)
    assert (out[1]["error"], out[4]["error"]) == ("var_too_long", "var_count_mismatch")
    codes = await pool.fetch(
        "SELECT l.destination, c.recipient_id, c.code FROM codes c JOIN links l ON l.id = c.link_id"
        " ORDER BY 1, 2"
    )
    org_id = await pool.fetchval("SELECT org_id FROM campaigns WHERE id = $1", cid)
    vault = RecipientKeys(api_settings.api.recipient_key).vault(org_id)
    sender = {vault.pseudonym(r): r for r in ("r1", "r2", "r3")}  # codes hold pseudonyms
    stored = {(r["destination"], sender[r["recipient_id"]]): r["code"] for r in codes}
    assert set(stored) == {
        (HELP, "r1"),
        (HELP, "r2"),
        ("https://shop.example.in/x", "r3"),
        (SHOP, "r1"),
    }
    assert out[0]["text"] == (
        f"Dear Asha, your coupon ends today: {SHORT_DOMAIN}/{stored[(SHOP, 'r1')]} -ACME"
    )
    assert out[2]["text"] == (
        f"Dear Ravi, your coupon ends today: {SHORT_DOMAIN}/{stored[(HELP, 'r2')]} -ACME"
    )
    assert out[3]["text"].endswith(f"{SHORT_DOMAIN}/{stored[(HELP, 'r1')]} -ACME")
    assert out[5]["text"].endswith(
        f"see {SHORT_DOMAIN}/{stored[('https://shop.example.in/x', 'r3')]} y -ACME"
    )
    assert [m.get("recipient") for m in out] == ["r1", None, "r2", "r1", None, "r3"]
    # the same batch again renders the same texts and mints nothing
    again = await batch(api, key, template=TEMPLATE, messages=messages, campaign_id=cid)
    assert again["messages"] == out
    assert await pool.fetchval("SELECT count(*) FROM codes") == 4


async def test_a_batch_with_tracking_off_leaves_links_and_needs_no_campaign(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    key, _ = await setup(api, tracking=False)
    messages = [{"recipient": f"r{i}", "values": [f"N{i}", HELP]} for i in range(300)]
    got = await batch(api, key, template=TEMPLATE, messages=messages)
    assert got["tracking"]["enabled"] is False  # type: ignore[index]
    out = got["messages"]
    assert isinstance(out, list) and len(out) == 300
    assert out[7]["text"] == f"Dear N7, your coupon ends today: {HELP} -ACME"
    assert out[7]["length_change"] == {"characters": 0, "units": 0, "segments": 0}
    assert await pool.fetchval("SELECT count(*) FROM codes") == 0


async def test_a_batch_is_bounded_and_its_messages_checked(api: ApiClient) -> None:
    key, cid = await setup(api, tracking=True)
    route = "/v1/render/batch"
    too_many = [{"values": ["a", "b"]}] * 10_001
    got = await api.call(
        "POST", route, auth=key, json={"template": TEMPLATE, "messages": too_many}, expect=422
    )
    assert got["error"] == "too_many_items"
    got = await batch(
        api, key, template=TEMPLATE, campaign_id=cid, messages=[{"values": ["a"], "phone": "1"}]
    )
    assert got["messages"] == [
        {
            "error": "unknown_field",
            "detail": "unknown field phone; expected some of recipient, values",
        }
    ]
    got = await batch(api, key, template=TEMPLATE, campaign_id=cid, messages=[["a", "b"]])
    assert got["messages"] == [
        {
            "error": "invalid_field",
            "detail": "a message must be an object with recipient, values",
        }
    ]
    got = await api.call(
        "POST",
        route,
        auth=key,
        json={"template": TEMPLATE, "messages": [{"values": ["a", SHOP]}]},
        expect=422,
    )
    assert got == {
        "error": "missing_field",
        "detail": "campaign_id is required to track the links in the values",
    }


async def test_concurrent_renders_of_a_new_destination_agree_on_one_link(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    key, cid = await setup(api, tracking=True)

    async def one(i: int) -> tuple[int, str]:
        got = await api.call(
            "POST",
            "/v1/render",
            auth=key,
            json={
                "template": TEMPLATE,
                "values": [f"N{i}", SHOP],
                "campaign_id": cid,
                "recipient": f"r{i % 4}",
            },
        )
        link = got["links"][0]
        return link["link_id"], link["code"]

    results = await asyncio.gather(*(one(i) for i in range(12)))
    assert len({link_id for link_id, _ in results}) == 1
    assert await pool.fetchval("SELECT count(*) FROM links") == 1
    # four recipients, four codes, each recipient always the same one
    by_recipient = {f"r{i % 4}": code for i, (_, code) in enumerate(results)}
    assert all(by_recipient[f"r{i % 4}"] == code for i, (_, code) in enumerate(results))
    assert await pool.fetchval("SELECT count(*) FROM codes") == 4
