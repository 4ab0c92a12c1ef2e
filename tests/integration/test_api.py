"""The links API against the real Postgres: organisations, keys, campaigns, links, recipients,
rendering, isolation between organisations. Every answer is checked against the OpenAPI schema."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import replace

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from shared.settings import Settings
from tests.integration.api_client import OPERATOR_TOKEN, SHORT_DOMAIN, ApiClient

pytestmark = pytest.mark.integration

LONG_URL = "https://shop.example.in/diwali/offers?utm_source=sms"  # 52 characters
TEMPLATE = "Dear {#var#}, your Diwali offer: {#var#} Valid till Sunday. -ACME"


async def campaign(api: ApiClient, key: str, kind: str = "one_time", **extra: object) -> int:
    body = {"name": f"{kind} campaign", "kind": kind, **extra}
    created = await api.call("POST", "/v1/campaigns", auth=key, json=body, expect=201)
    return int(created["id"])


async def render(api: ApiClient, key: str, expect: int = 200, **body: object) -> dict[str, object]:
    result: dict[str, object] = await api.call(
        "POST", "/v1/render", auth=key, json=body, expect=expect
    )
    return result


async def test_tracking_is_off_by_default_and_rendering_then_leaves_links_untouched(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    org_id, key = await api.new_org("Acme Retail")
    org = await api.call("GET", "/v1/orgs/{org_id}", auth=key, org_id=org_id)
    assert (org["name"], org["link_tracking_enabled"], org["tracking_changed_at"]) == (
        "Acme Retail",
        False,
        None,
    )
    cid = await campaign(api, key)
    values = ["Asha", "www.acme.in/sale"]
    got = await render(api, key, template=TEMPLATE, values=values, campaign_id=cid, recipient="r1")
    text = "Dear Asha, your Diwali offer: www.acme.in/sale Valid till Sunday. -ACME"
    assert got["text"] == got["original"]["text"] == text  # type: ignore[index]
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
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True)
    cid = await campaign(api, key)
    got = await render(
        api, key, template=TEMPLATE, values=["Asha", LONG_URL], campaign_id=cid, recipient="r1"
    )
    (link,) = got["links"]  # type: ignore[misc]
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
    assert got["original"]["length"] == len(text) - 18 + 52  # type: ignore[index]
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
        "recipient_id": "r1",
    }
    # rendering again for the same recipient gives the same code; another recipient another one
    again = await render(
        api, key, template=TEMPLATE, values=["Asha", LONG_URL], campaign_id=cid, recipient="r1"
    )
    other = await render(
        api, key, template=TEMPLATE, values=["Ravi", LONG_URL], campaign_id=cid, recipient="r2"
    )
    assert again["text"] == text
    assert other["links"][0]["link_id"] == link["link_id"]  # type: ignore[index]
    assert other["links"][0]["code"] != link["code"]  # type: ignore[index]
    assert await pool.fetchval("SELECT count(*) FROM codes") == 2


async def test_switching_tracking_is_for_the_operator_only(api: ApiClient) -> None:
    org_id, key = await api.new_org("Acme")
    route = "/v1/orgs/{org_id}/link-tracking"
    refused = await api.call(
        "PUT", route, auth=key, json={"enabled": True}, expect=403, org_id=org_id
    )
    assert refused == {"error": "forbidden", "detail": "only the operator may do this"}
    on = await api.call("PUT", route, auth=OPERATOR_TOKEN, json={"enabled": True}, org_id=org_id)
    assert on["link_tracking_enabled"] is True and on["tracking_changed_at"] is not None
    off = await api.call("PUT", route, auth=OPERATOR_TOKEN, json={"enabled": False}, org_id=org_id)
    assert off["link_tracking_enabled"] is False


async def test_a_link_in_the_fixed_text_is_refused_with_its_position(api: ApiClient) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    template = "Hi {#var#}, shop at https://acme.in/sale today"
    got = await render(api, key, expect=422, template=template, values=["Asha"])
    assert got == {
        "error": "link_outside_var",
        "detail": "the template's fixed text has a link at position 20 ('https://acme.in/sale');"
        " DLT allows links only inside {#var#} slots",
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
    _, key = await api.new_org("Acme", tracking=True)
    got = await render(api, key, expect=422, **body)
    assert got["error"] == error
    assert {k: got[k] for k in extra} == extra
    assert await pool.fetchval("SELECT count(*) FROM codes") == 0


async def test_a_value_too_long_even_after_shortening_mints_nothing(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    cid = await campaign(api, key)
    value = f"at {LONG_URL} now!!"  # 3 + 18 + 6 = 27 after shortening: fits 30, not 26
    got = await render(
        api, key, template="Go {#var#}", values=[value], campaign_id=cid, var_limit=26, expect=422
    )
    assert (got["error"], got["slot"], got["length"], got["limit"]) == ("var_too_long", 0, 27, 26)
    assert await pool.fetchval("SELECT count(*) FROM links") == 0
    ok = await render(api, key, template="Go {#var#}", values=[value], campaign_id=cid)
    assert ok["values"] == [f"at {ok['links'][0]['short_url']} now!!"]  # type: ignore[index]


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
    _, key = await api.new_org("Acme")
    # filler + "Code " + value + "." where the value is `extra` + "1234"
    template = filler + "Code {#var#}."
    got = await render(api, key, template=template, values=[extra + "1234"], var_limit=30)
    assert (got["encoding"], got["length"], got["segments"]) == (encoding, length, segments)


async def test_a_resend_reuses_each_recipients_code_and_a_recurrence_does_not(
    api: ApiClient,
) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    first = await campaign(api, key, "coupon_expiry_reminder")
    resend = await campaign(api, key, "resend", parent_id=first)
    resend_again = await campaign(api, key, "resend", parent_id=resend)
    recurrence = await campaign(api, key, "recurring", parent_id=first)

    async def code_for(cid: int, recipient: str) -> tuple[int, str]:
        got = await render(
            api,
            key,
            template="Use {#var#}",
            values=[LONG_URL],
            campaign_id=cid,
            recipient=recipient,
        )
        link = got["links"][0]  # type: ignore[index]
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
    _, key = await api.new_org("Acme", tracking=True)
    cid = await campaign(api, key)
    body = {"template": "Use {#var#}", "values": [LONG_URL], "campaign_id": cid, "recipient": "r1"}
    first = (await render(api, key, **body))["links"][0]  # type: ignore[index]
    await pool.execute("UPDATE links SET expires_at = now() - interval '1 s'")
    second = (await render(api, key, **body))["links"][0]  # type: ignore[index]
    await pool.execute("UPDATE links SET disabled = true WHERE id = $1", second["link_id"])
    third = (await render(api, key, **body))["links"][0]  # type: ignore[index]
    assert len({first["link_id"], second["link_id"], third["link_id"]}) == 3
    assert len({first["code"], second["code"], third["code"]}) == 3


async def test_parents_are_checked(api: ApiClient) -> None:
    _, key = await api.new_org("Acme")
    _, other_key = await api.new_org("Other")
    theirs = await campaign(api, other_key)
    mine = await campaign(api, key)
    for kind, parent, message in (
        ("resend", theirs, f"parent campaign {theirs} does not exist"),
        ("one_time", mine, "only recurring and resend campaigns have a parent"),
    ):
        got = await api.call(
            "POST",
            "/v1/campaigns",
            auth=key,
            json={"name": "x", "kind": kind, "parent_id": parent},
            expect=422,
        )
        assert got == {"error": "invalid_parent", "detail": message}
    got = await api.call(
        "POST", "/v1/campaigns", auth=key, json={"name": "x", "kind": "flash"}, expect=422
    )
    assert got["error"] == "invalid_kind"


async def test_an_organisation_cannot_see_another_organisations_data(api: ApiClient) -> None:
    theirs_id, theirs = await api.new_org("Them", tracking=True)
    _, mine = await api.new_org("Us", tracking=True)
    cid = await campaign(api, theirs)
    link = await api.call(
        "POST",
        "/v1/campaigns/{campaign_id}/links",
        auth=theirs,
        json={"destination": LONG_URL},
        expect=201,
        campaign_id=cid,
    )
    not_found = [
        ("GET", "/v1/campaigns/{campaign_id}", None, {"campaign_id": cid}),
        ("GET", "/v1/campaigns/{campaign_id}/links", None, {"campaign_id": cid}),
        (
            "POST",
            "/v1/campaigns/{campaign_id}/links",
            {"destination": LONG_URL},
            {"campaign_id": cid},
        ),
        ("GET", "/v1/links/{link_id}", None, {"link_id": link["id"]}),
        ("POST", "/v1/links/{link_id}/recipients", {"recipients": ["x"]}, {"link_id": link["id"]}),
        ("GET", "/v1/orgs/{org_id}", None, {"org_id": theirs_id}),
    ]
    for method, route, body, params in not_found:
        got = await api.call(method, route, auth=mine, json=body, expect=404, **params)
        assert got["error"] == "not_found", route
    got = await render(
        api, mine, expect=404, template="Go {#var#}", values=[LONG_URL], campaign_id=cid
    )
    assert got == {"error": "not_found", "detail": f"campaign {cid} does not exist"}
    listed = await api.call("GET", "/v1/campaigns", auth=mine)
    assert listed == {"items": [], "next_after": None}
    # the owner still sees its own
    mine_view = await api.call("GET", "/v1/links/{link_id}", auth=theirs, link_id=link["id"])
    assert mine_view == link


async def test_credentials(
    api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    org_id, key = await api.new_org("Acme")
    assert re.fullmatch(r"ctk_[0-9A-Za-z]{40}", key)
    row = await pool.fetchrow("SELECT key_hash, prefix FROM api_keys WHERE org_id = $1", org_id)
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert row["prefix"] == key[:10]
    dumped = await pool.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert key not in dumped and key[4:] not in dumped
    for auth in (None, "ctk_" + "A" * 40, "not-a-key", OPERATOR_TOKEN[:-1]):
        got = await api.call("GET", "/v1/campaigns", auth=auth, expect=401)
        assert got["error"] == "unauthorized"
    got = await api.call("GET", "/v1/campaigns", auth=OPERATOR_TOKEN, expect=403)
    assert got["detail"] == "the operator credential cannot act inside an organisation"
    got = await api.call("POST", "/v1/orgs", auth=key, json={"name": "x"}, expect=403)
    assert got["error"] == "forbidden"
    # a second key, listed without secrets, then the first one revoked
    second = await api.call("POST", "/v1/api-keys", auth=key, json={"name": "ci"}, expect=201)
    listed = await api.call("GET", "/v1/api-keys", auth=second["key"])
    assert [(k["name"], k["revoked_at"]) for k in listed["items"]] == [("main", None), ("ci", None)]
    first_id = listed["items"][0]["id"]
    revoked = await api.call("DELETE", "/v1/api-keys/{key_id}", auth=second["key"], key_id=first_id)
    assert revoked["revoked_at"] is not None
    await api.call("GET", "/v1/campaigns", auth=key, expect=401)
    await api.call("GET", "/v1/campaigns", auth=second["key"])
    # the API logged every request and operator action, and never a credential
    logged = [str(vars(r)) for r in caplog.records if r.name.startswith("services.api")]
    assert sum("'msg': 'request'" in line for line in logged) == 13
    assert sum("API key created" in line for line in logged) == 2
    for secret in (key, second["key"], OPERATOR_TOKEN):
        assert not any(secret in line for line in logged)


async def test_the_operator_api_is_off_without_a_token(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    server = TestServer(create_app(replace(settings, short_domain=SHORT_DOMAIN)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            api = ApiClient(http)
            got = await api.call("POST", "/v1/orgs", auth="", json={"name": "x"}, expect=403)
            assert got["detail"] == "the operator API is off: set OPERATOR_TOKEN, or use the CLI"
    finally:
        await server.close()


async def test_links_are_validated_and_normalised(api: ApiClient) -> None:
    _, key = await api.new_org("Acme")
    cid = await campaign(api, key)
    route = "/v1/campaigns/{campaign_id}/links"
    link = await api.call(
        "POST",
        route,
        auth=key,
        json={
            "destination": "HTTPS://Shop.Example.IN:443/offer?x=1",
            "expires_at": "2099-01-31T18:30:00+05:30",
            "fallback_url": "https://shop.example.in/expired",
        },
        expect=201,
        campaign_id=cid,
    )
    assert link["destination"] == "https://shop.example.in/offer?x=1"
    assert link["expires_at"] == "2099-01-31T13:00:00+00:00"
    assert link["fallback_url"] == "https://shop.example.in/expired"
    for body, error, detail in (
        ({"destination": "javascript:alert(1)"}, "invalid_destination", "destination must be an"),
        ({"destination": "https://a.in@evil.in/"}, "invalid_destination", "destination must not"),
        (
            {"destination": "https://a.in/", "expires_at": "2001-01-01T00:00:00Z"},
            "invalid_expiry",
            "expires_at must be in the future",
        ),
        (
            {"destination": "https://a.in/", "expires_at": "2099-01-01T00:00:00"},
            "invalid_field",
            "expires_at must be a timestamp with a time zone",
        ),
        (
            {"destination": "https://a.in/", "fallback_url": "ftp://x.in/"},
            "invalid_fallback",
            "fallback_url: destination must be",
        ),
    ):
        got = await api.call("POST", route, auth=key, json=body, expect=422, campaign_id=cid)
        assert (got["error"], got["detail"][: len(detail)]) == (error, detail)


async def test_bulk_recipients_mint_one_code_each_and_keep_existing_ones(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    _, key = await api.new_org("Acme")
    cid = await campaign(api, key)
    link = await api.call(
        "POST",
        "/v1/campaigns/{campaign_id}/links",
        auth=key,
        json={"destination": LONG_URL},
        expect=201,
        campaign_id=cid,
    )
    route = "/v1/links/{link_id}/recipients"
    people = [f"+9198{i:08d}" for i in range(2000)]
    first = await api.call("POST", route, auth=key, json={"recipients": people}, link_id=link["id"])
    assert (first["minted"], first["reused"], len(first["codes"])) == (2000, 0, 2000)
    codes = {c["recipient"]: c["code"] for c in first["codes"]}
    assert list(codes) == people
    assert len(set(codes.values())) == 2000
    assert all(re.fullmatch(r"[0-9A-Za-z]{10}", c) for c in codes.values())
    assert first["codes"][0]["short_url"] == f"{SHORT_DOMAIN}/{codes[people[0]]}"
    more = people[1500:] + [f"new-{i}" for i in range(700)] + ["new-1"]
    second = await api.call("POST", route, auth=key, json={"recipients": more}, link_id=link["id"])
    assert (second["minted"], second["reused"], len(second["codes"])) == (700, 500, 1200)
    assert all(codes[c["recipient"]] == c["code"] for c in second["codes"][:500])
    assert await pool.fetchval("SELECT count(*) FROM codes WHERE link_id = $1", link["id"]) == 2700
    bad = await api.call(
        "POST", route, auth=key, json={"recipients": ["ok", ""]}, expect=422, link_id=link["id"]
    )
    assert (bad["error"], bad["index"]) == ("invalid_recipient", 1)


async def test_malformed_requests_get_json_errors(api: ApiClient) -> None:
    _, key = await api.new_org("Acme")
    got = await api.call("POST", "/v1/campaigns", auth=key, data=b"{nope", expect=400)
    assert got == {"error": "invalid_json", "detail": "the body must be a JSON object"}
    got = await api.call("POST", "/v1/campaigns", auth=key, json=[1], expect=400)
    assert got["error"] == "invalid_json"
    got = await api.call(
        "GET", "/v1/campaigns/{campaign_id}", auth=key, expect=404, campaign_id=2**63
    )
    assert got == {"error": "not_found", "detail": f"campaign {2**63} does not exist"}
    async with api.http.get("/v1/nothing-here") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "not_found", "detail": "Not Found"}


async def test_the_operator_lists_organisations_and_an_owner_lists_its_links(
    api: ApiClient,
) -> None:
    first, key = await api.new_org("Acme")
    second, _ = await api.new_org("Beta")
    listed = await api.call("GET", "/v1/orgs?limit=1", auth=OPERATOR_TOKEN)
    assert [o["id"] for o in listed["items"]] == [first] and listed["next_after"] == first
    rest = await api.call("GET", f"/v1/orgs?after={first}", auth=OPERATOR_TOKEN)
    assert [(o["id"], o["name"]) for o in rest["items"]] == [(second, "Beta")]
    cid = await campaign(api, key)
    route = "/v1/campaigns/{campaign_id}/links"
    made = [
        await api.call(
            "POST",
            route,
            auth=key,
            json={"destination": f"https://a.in/{i}"},
            expect=201,
            campaign_id=cid,
        )
        for i in range(3)
    ]
    links = await api.call("GET", route, auth=key, campaign_id=cid)
    assert links == {"items": made, "next_after": None}


async def test_pagination_and_operational_endpoints(api: ApiClient) -> None:
    _, key = await api.new_org("Acme")
    ids = [await campaign(api, key) for _ in range(5)]
    page1 = await api.call("GET", "/v1/campaigns?limit=2", auth=key)
    assert [c["id"] for c in page1["items"]] == ids[:2] and page1["next_after"] == ids[1]
    page3 = await api.call("GET", f"/v1/campaigns?limit=2&after={ids[3]}", auth=key)
    assert [c["id"] for c in page3["items"]] == ids[4:] and page3["next_after"] is None
    async with api.http.get("/readyz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok", "postgres": "ok"})
    async with api.http.get("/metrics") as resp:
        text = await resp.text()
    assert (
        'clicktrack_api_requests_total{method="GET",route="/v1/campaigns",status="200"} 2.0' in text
    )
    assert 'route="/v1/campaigns",status="201"} 5.0' in text
    async with api.http.get("/v1/openapi.json") as resp:
        assert (await resp.json())["openapi"] == "3.1.0"
