"""Rendering through the API: tracking off and on, DLT refusals, segment boundaries, resends."""

from __future__ import annotations

import re

import asyncpg
import pytest

from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.integration.api_client import LONG_URL, SHORT_DOMAIN, TEMPLATE, WHITELISTED, ApiClient

pytestmark = pytest.mark.integration


async def test_tracking_is_off_by_default_and_rendering_then_leaves_links_untouched(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    org_id, key = await api.new_org("Acme Retail", whitelisted=WHITELISTED)
    org = await api.call("GET", "/v1/orgs/{org_id}", auth=key, org_id=org_id)
    assert (org["name"], org["link_tracking_enabled"], org["tracking_changed_at"]) == (
        "Acme Retail",
        False,
        None,
    )
    cid = await api.new_campaign(key)
    values = ["Asha", "www.acme.in/sale"]
    got = await api.render(key, template=TEMPLATE, values=values, campaign_id=cid, recipient="r1")
    text = "Dear Asha, your Diwali offer: www.acme.in/sale Valid till Sunday. -ACME"
    assert got["text"] == got["original"]["text"] == text
    assert got["tracking"] == {
        "enabled": False,
        "detail": "link tracking is off for this organisation: links left untouched",
    }
    assert got["links"] == [
        {"slot": 1, "url": "www.acme.in/sale", "short_url": None, "link_id": None, "code": None}
    ]
    assert got["length_change"] == {"characters": 0, "units": 0, "segments": 0}
    # nothing was minted or linked
    assert await pool.fetchval("SELECT count(*) FROM links") == 0
    assert await pool.fetchval("SELECT count(*) FROM codes") == 0


async def test_with_tracking_on_links_become_the_recipients_short_link(
    api: ApiClient, pool: asyncpg.Pool, api_settings: Settings
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    cid = await api.new_campaign(key)
    got = await api.render(
        key, template=TEMPLATE, values=["Asha", LONG_URL], campaign_id=cid, recipient="r1"
    )
    (link,) = got["links"]
    assert re.fullmatch(r"[0-9A-Za-z]{10}", link["code"])
    short = f"{SHORT_DOMAIN}/{link['code']}"
    assert link == {
        "slot": 1,
        "url": LONG_URL,
        "short_url": short,
        "link_id": link["link_id"],
        "code": link["code"],
    }
    text = f"Dear Asha, your Diwali offer: {short} Valid till Sunday. -ACME"
    assert got["text"] == text
    assert (got["encoding"], got["length"], got["segments"]) == ("GSM-7", len(text), 1)
    assert got["original"]["length"] == len(text) - 18 + 52
    assert got["length_change"] == {"characters": 18 - 52, "units": 18 - 52, "segments": 0}
    row = await pool.fetchrow(
        "SELECT l.destination, l.campaign_id, l.org_id, c.recipient_id FROM codes c"
        " JOIN links l ON l.id = c.link_id WHERE c.code = $1",
        link["code"],
    )
    assert dict(row) == {
        "destination": LONG_URL,
        "campaign_id": cid,
        "org_id": org_id,
        "recipient_id": RecipientKeys(api_settings.api.recipient_key).vault(org_id).pseudonym("r1"),
    }
    # rendering again for the same recipient gives the same code; another recipient another one
    again = await api.render(
        key, template=TEMPLATE, values=["Asha", LONG_URL], campaign_id=cid, recipient="r1"
    )
    other = await api.render(
        key, template=TEMPLATE, values=["Ravi", LONG_URL], campaign_id=cid, recipient="r2"
    )
    assert again["text"] == text
    assert other["links"][0]["link_id"] == link["link_id"]
    assert other["links"][0]["code"] != link["code"]
    assert await pool.fetchval("SELECT count(*) FROM codes") == 2


async def test_a_link_in_the_fixed_text_is_refused_with_its_position(api: ApiClient) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    template = "Hi {#var#}, shop at https://acme.in/sale today"
    got = await api.render(key, expect=422, template=template, values=["Asha"])
    assert got == {
        "error": "link_outside_var",
        "detail": "the template's fixed text has a link at position 20 ('https://acme.in/sale');"
        " DLT allows links only inside {#url#}, {#urlott#} or {#var#} slots",
        "position": 20,
    }


@pytest.mark.parametrize(
    ("body", "error", "extra"),
    [
        ({"template": "Hi {#var#} {#var#}", "values": ["a"]}, "var_count_mismatch", {}),
        (
            {"template": "Hi {#var#}", "values": ["x" * 31]},
            "var_too_long",
            {"slot": 0, "length": 31, "limit": 30},
        ),
        (
            {"template": "Go {#var#}", "values": [LONG_URL], "campaign_id": 1, "var_limit": 17},
            "short_link_too_long",
            {"length": 18, "limit": 17},
        ),
        ({"template": "Go {#var#}", "values": [LONG_URL]}, "missing_field", {}),
        ({"template": "Hi {#name#}", "values": []}, "unsupported_variable", {"position": 3}),
        ({"template": "Hi", "valuez": []}, "unknown_field", {}),
        ({"template": "Go {#var#}", "values": [1]}, "invalid_field", {}),
    ],
)
async def test_render_refuses_what_dlt_would_refuse(
    api: ApiClient, pool: asyncpg.Pool, body: dict[str, object], error: str, extra: dict[str, int]
) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    got = await api.render(key, expect=422, **body)
    assert got["error"] == error
    assert {k: got[k] for k in extra} == extra
    assert await pool.fetchval("SELECT count(*) FROM codes") == 0


async def test_a_value_too_long_even_after_shortening_mints_nothing(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    cid = await api.new_campaign(key)
    value = f"at {LONG_URL} now!!"  # 3 + 18 + 6 = 27 after shortening: fits 30, not 26
    got = await api.render(
        key, template="Go {#var#}", values=[value], campaign_id=cid, var_limit=26, expect=422
    )
    assert (got["error"], got["slot"], got["length"], got["limit"]) == ("var_too_long", 0, 27, 26)
    assert await pool.fetchval("SELECT count(*) FROM links") == 0
    ok = await api.render(key, template="Go {#var#}", values=[value], campaign_id=cid)
    assert ok["values"] == [f"at {ok['links'][0]['short_url']} now!!"]


@pytest.mark.parametrize(
    ("filler", "extra", "encoding", "length", "segments"),
    [
        ("a" * 150, "", "GSM-7", 160, 1),
        ("a" * 151, "", "GSM-7", 161, 2),
        ("a" * 140, "€[]{}", "GSM-7", 160, 1),  # five extension characters cost ten septets
        ("a" * 141, "€[]{}", "GSM-7", 161, 2),
        ("अ" * 60, "", "UCS-2", 70, 1),
        ("अ" * 61, "", "UCS-2", 71, 2),
    ],
)
async def test_segments_at_the_boundaries(
    api: ApiClient, filler: str, extra: str, encoding: str, length: int, segments: int
) -> None:
    _, key = await api.new_org("Acme", whitelisted=WHITELISTED)
    # filler + "Code " + value + "." where the value is `extra` + "1234"
    template = filler + "Code {#var#}."
    got = await api.render(key, template=template, values=[extra + "1234"], var_limit=30)
    assert (got["encoding"], got["length"], got["segments"]) == (encoding, length, segments)


async def test_a_resend_reuses_each_recipients_code_and_a_recurrence_does_not(
    api: ApiClient,
) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    first = await api.new_campaign(key, "coupon_expiry_reminder")
    resend = await api.new_campaign(key, "resend", parent_id=first)
    resend_again = await api.new_campaign(key, "resend", parent_id=resend)
    recurrence = await api.new_campaign(key, "recurring", parent_id=first)

    async def code_for(cid: int, recipient: str) -> tuple[int, str]:
        got = await api.render(
            key,
            template="Use {#var#}",
            values=[LONG_URL],
            campaign_id=cid,
            recipient=recipient,
        )
        link = got["links"][0]
        return link["link_id"], link["code"]

    original = await code_for(first, "r1")
    assert await code_for(resend, "r1") == original
    assert await code_for(resend_again, "r1") == original
    newcomer = await code_for(resend, "r2")  # not in the first send: a new code on the same link
    assert newcomer[0] == original[0] and newcomer[1] != original[1]
    assert await code_for(first, "r2") == newcomer
    other_link, other_code = await code_for(recurrence, "r1")
    assert other_link != original[0] and other_code != original[1]
    # the links API says the same: adding the destination to the resend returns the parent's link
    reused = await api.call(
        "POST",
        "/v1/campaigns/{campaign_id}/links",
        auth=key,
        json={"destination": LONG_URL},
        campaign_id=resend,
    )
    assert (reused["id"], reused["campaign_id"]) == (original[0], first)


async def test_rendering_never_hands_out_a_disabled_or_expired_link(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    cid = await api.new_campaign(key)
    body = {"template": "Use {#var#}", "values": [LONG_URL], "campaign_id": cid, "recipient": "r1"}
    first = (await api.render(key, **body))["links"][0]
    await pool.execute("UPDATE links SET expires_at = now() - interval '1 s'")
    second = (await api.render(key, **body))["links"][0]
    await pool.execute("UPDATE links SET disabled = true WHERE id = $1", second["link_id"])
    third = (await api.render(key, **body))["links"][0]
    assert len({first["link_id"], second["link_id"], third["link_id"]}) == 3
    assert len({first["code"], second["code"], third["code"]}) == 3
