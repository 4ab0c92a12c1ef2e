"""The links API against the real Postgres: organisations, keys, campaigns, links, recipients,
isolation between organisations. Every answer is checked against the OpenAPI schema."""

from __future__ import annotations

import hashlib
import json
import logging
import re

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from services.api.openapi import document
from shared.settings import Settings
from tests.integration.api_client import LONG_URL, OPERATOR_TOKEN, SHORT_DOMAIN, ApiClient

pytestmark = pytest.mark.integration


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


async def test_the_operator_sets_an_organisations_time_zone(api: ApiClient) -> None:
    org_id, key = await api.new_org("Acme")
    route = "/v1/orgs/{org_id}/time-zone"
    body = {"time_zone": "Asia/Kathmandu", "ticket": "SUP-17"}
    refused = await api.call("PUT", route, auth=key, json=body, expect=403, org_id=org_id)
    assert refused["error"] == "forbidden"
    bad = await api.call("PUT", route, auth=OPERATOR_TOKEN, json={"time_zone": "Mars/Olympus"},
                         expect=422, org_id=org_id)  # fmt: skip
    assert bad["error"] == "invalid_tz" and "Mars/Olympus" in bad["detail"]
    bad = await api.call("PUT", route, auth=OPERATOR_TOKEN, json={"tz": "UTC"}, expect=422,
                         org_id=org_id)  # fmt: skip
    assert bad["error"] == "unknown_field"
    await api.call("PUT", route, auth=OPERATOR_TOKEN, json=body, expect=404, org_id=org_id + 999)
    org = await api.call("PUT", route, auth=OPERATOR_TOKEN, json=body, org_id=org_id)
    assert (org["id"], org["time_zone"]) == (org_id, "Asia/Kathmandu")
    assert (await api.call("GET", "/v1/orgs/{org_id}", auth=key, org_id=org_id))["time_zone"] == (
        "Asia/Kathmandu"
    )
    report = await api.call("GET", "/v1/report", auth=key)
    assert report["window"]["tz"] == "Asia/Kathmandu"  # the reports' default from now on
    audit = await api.call("GET", "/v1/audit?org_id={org_id}", auth=OPERATOR_TOKEN, org_id=org_id)
    assert [(e["action"], e["ticket"], e["detail"]) for e in audit["items"]][-1] == (
        "org.time_zone",
        "SUP-17",
        {"time_zone": "Asia/Kathmandu"},
    )


async def test_parents_are_checked(api: ApiClient) -> None:
    _, key = await api.new_org("Acme")
    _, other_key = await api.new_org("Other")
    theirs = await api.new_campaign(other_key)
    mine = await api.new_campaign(key)
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
    cid = await api.new_campaign(theirs)
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
    got = await api.render(
        mine, expect=404, template="Go {#var#}", values=[LONG_URL], campaign_id=cid
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
    server = TestServer(create_app(settings.changed(SHORT_DOMAIN=SHORT_DOMAIN)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            api = ApiClient(http)
            got = await api.call("POST", "/v1/orgs", auth="", json={"name": "x"}, expect=403)
            assert got["detail"] == "the operator API is off: set OPERATOR_TOKEN, or use the CLI"
    finally:
        await server.close()


async def test_links_are_validated_and_normalised(api: ApiClient) -> None:
    _, key = await api.new_org("Acme", tracking=True)
    cid = await api.new_campaign(key)
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
        (  # 10000-01-01 in UTC: Postgres's driver cannot even store it (was a 500)
            {"destination": "https://a.in/", "expires_at": "9999-12-31T23:59:59-12:00"},
            "invalid_expiry",
            "expires_at must be within 100 years",
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
    _, key = await api.new_org("Acme", tracking=True)
    cid = await api.new_campaign(key)
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
    assert sorted(codes) == people  # in the order of their pseudonyms, the sender's ids
    assert len(set(codes.values())) == 2000
    assert all(re.fullmatch(r"[0-9A-Za-z]{10}", c) for c in codes.values())
    assert {c["short_url"] for c in first["codes"]} == {
        f"{SHORT_DOMAIN}/{c}" for c in codes.values()
    }
    more = people[1500:] + [f"new-{i}" for i in range(700)] + ["new-1"]
    second = await api.call("POST", route, auth=key, json={"recipients": more}, link_id=link["id"])
    assert (second["minted"], second["reused"], len(second["codes"])) == (700, 500, 1200)
    kept = [c for c in second["codes"] if c["recipient"] in codes]
    assert len(kept) == 500 and all(codes[c["recipient"]] == c["code"] for c in kept)
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
    first, key = await api.new_org("Acme", tracking=True)
    second, _ = await api.new_org("Beta")
    listed = await api.call("GET", "/v1/orgs?limit=1", auth=OPERATOR_TOKEN)
    assert [o["id"] for o in listed["items"]] == [first] and listed["next_after"] == first
    rest = await api.call("GET", f"/v1/orgs?after={first}", auth=OPERATOR_TOKEN)
    assert [(o["id"], o["name"]) for o in rest["items"]] == [(second, "Beta")]
    cid = await api.new_campaign(key)
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


async def test_pagination_and_operational_endpoints(api: ApiClient, pool: asyncpg.Pool) -> None:
    _, key = await api.new_org("Acme")
    ids = [await api.new_campaign(key) for _ in range(5)]
    page1 = await api.call("GET", "/v1/campaigns?limit=2", auth=key)
    assert [c["id"] for c in page1["items"]] == ids[:2] and page1["next_after"] == ids[1]
    page3 = await api.call("GET", f"/v1/campaigns?limit=2&after={ids[3]}", auth=key)
    assert [c["id"] for c in page3["items"]] == ids[4:] and page3["next_after"] is None
    async with api.http.get("/readyz") as resp:
        ready = {"status": "ok", "postgres": "ok", "schema": "ok"}
        assert (resp.status, await resp.json()) == (200, ready)
    await pool.execute("DELETE FROM schema_migrations WHERE version = '0003_api_keys'")
    async with api.http.get("/readyz") as resp:
        assert (resp.status, await resp.json()) == (
            503,
            {
                "status": "degraded",
                "postgres": "ok",
                "schema": "missing 0003_api_keys: run clicktrack migrate",
            },
        )
    async with api.http.get("/metrics") as resp:
        assert resp.status == 404  # not on the public port:
    async with aiohttp.ClientSession() as http, http.get(f"{api.metrics_url}/metrics") as resp:
        text = await resp.text()
    assert (
        'clicktrack_api_requests_total{method="GET",route="/v1/campaigns",status="200"} 2.0' in text
    )
    assert 'route="/v1/campaigns",status="201"} 5.0' in text
    async with api.http.get("/v1/openapi.json") as resp:
        assert await resp.json() == json.loads(json.dumps(document()))
