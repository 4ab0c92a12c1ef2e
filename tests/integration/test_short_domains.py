"""Short domains per organisation and the DLT header in the path, through the operator API, the
links API and a running redirector: a code answers on its own organisation's domain (and on the
global one), is 404 on another's, and a header-in-path link only under its campaign's header."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from services.redirector.app import Redirector
from shared import misses
from shared.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_client import LONG_URL, OPERATOR_TOKEN, ApiClient
from tests.integration.test_cli_operator import clicktrack

pytestmark = pytest.mark.integration

DOMAINS = "/v1/orgs/{org_id}/domains"


async def get(base: str, path: str, host: str) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}{path}", headers={"Host": host}, allow_redirects=False) as resp,
    ):
        return resp.status, resp.headers.get("Location")


def sample(app: Redirector, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def add_domain(api: ApiClient, org_id: int, domain: str, **extra: Any) -> Any:
    return await api.call(
        "POST", DOMAINS, auth=OPERATOR_TOKEN, json={"domain": domain, **extra}, expect=201,
        org_id=org_id,
    )  # fmt: skip


async def mint_one(api: ApiClient, key: str, campaign_id: int, recipient: str) -> Any:
    link_id = await api.new_link(key, campaign_id, LONG_URL)
    minted = await api.call(
        "POST", "/v1/links/{link_id}/recipients", auth=key, json={"recipients": [recipient]},
        link_id=link_id,
    )  # fmt: skip
    return minted["codes"][0]


@pytest.fixture
async def running(settings: Settings, pool: object, topics: object) -> Any:
    app = Redirector(settings)
    await app.start("127.0.0.1", 0)
    yield app
    await app.stop()


async def test_two_organisations_each_on_its_own_domain(
    api: ApiClient, running: Redirector
) -> None:
    alpha, key_a = await api.new_org("Alpha", tracking=True)
    beta, key_b = await api.new_org("Beta", tracking=True)
    added = await add_domain(api, alpha, "S.Alpha.in", ticket="SUP-1")
    assert (added["domain"], added["is_default"]) == ("s.alpha.in", True)
    await add_domain(api, beta, "s.beta.in")
    taken = await api.call(
        "POST", DOMAINS, auth=OPERATOR_TOKEN, json={"domain": "s.alpha.in"}, expect=422,
        org_id=beta,
    )  # fmt: skip
    assert taken["error"] == "domain_taken"

    code_a = await mint_one(api, key_a, await api.new_campaign(key_a), "+919800000001")
    code_b = await mint_one(api, key_b, await api.new_campaign(key_b), "+919800000002")
    assert code_a["short_url"] == f"s.alpha.in/{code_a['code']}"
    assert code_b["short_url"] == f"s.beta.in/{code_b['code']}"

    # the redirector learns of the new domains over pub/sub (or its periodic reload)
    for _ in range(50):
        if (await get(running.url, f"/{code_a['code']}", "s.alpha.in"))[0] == 302:
            break
        await asyncio.sleep(0.1)
    assert await get(running.url, f"/{code_a['code']}", "s.alpha.in") == (302, LONG_URL)
    assert await get(running.url, f"/{code_a['code']}", "S.ALPHA.IN:443") == (302, LONG_URL)
    assert await get(running.url, f"/{code_b['code']}", "s.beta.in") == (302, LONG_URL)
    assert await get(running.url, f"/{code_a['code']}", "s.beta.in") == (404, None)
    assert await get(running.url, f"/{code_b['code']}", "s.alpha.in") == (404, None)
    assert sample(running, "clicktrack_redirects_total", outcome="wrong_domain") == 2
    # the global domain (the redirector's SHORT_DOMAIN) keeps serving every code
    assert await get(running.url, f"/{code_a['code']}", "127.0.0.1") == (302, LONG_URL)

    # an unknown host is a 404 decided in memory: no Redis, no Postgres
    lookups = sample(running, "clicktrack_resolve_postgres_lookups_total")
    misses = sample(running, "clicktrack_resolve_misses_total", layer="memory")
    for path in (f"/{code_a['code']}", "/ZZZZZZZZZZ", "/ACMEIN/ZZZZZZZZZZ"):
        assert await get(running.url, path, "evil.example") == (404, None)
    assert sample(running, "clicktrack_redirects_total", outcome="unknown_host") == 3
    assert sample(running, "clicktrack_resolve_postgres_lookups_total") == lookups
    assert sample(running, "clicktrack_resolve_misses_total", layer="memory") == misses

    # moved to Beta: Alpha's codes there are 404 from then on, Beta's answer
    moved = await add_domain(api, beta, "s.alpha.in", move=True, ticket="SUP-4")
    assert (moved["org_id"], moved["is_default"]) == (beta, False)
    for _ in range(50):
        if (await get(running.url, f"/{code_b['code']}", "s.alpha.in"))[0] == 302:
            break
        await asyncio.sleep(0.1)
    assert await get(running.url, f"/{code_b['code']}", "s.alpha.in") == (302, LONG_URL)
    assert await get(running.url, f"/{code_a['code']}", "s.alpha.in") == (404, None)
    audit = await api.call("GET", "/v1/audit?org_id={org_id}", auth=OPERATOR_TOKEN, org_id=beta)
    assert [(e["action"], e["ticket"]) for e in audit["items"]][-1] == ("domain.moved", "SUP-4")
    assert audit["items"][-1]["detail"] == {"domain": "s.alpha.in", "from_org": alpha}

    # removed: its links there are 404 once the redirector hears of it
    await api.call(
        "DELETE", DOMAINS + "/{domain}?ticket=SUP-2", auth=OPERATOR_TOKEN, org_id=beta,
        domain="s.beta.in",
    )  # fmt: skip
    for _ in range(50):
        if (await get(running.url, f"/{code_b['code']}", "s.beta.in"))[0] == 404:
            break
        await asyncio.sleep(0.1)
    assert await get(running.url, f"/{code_b['code']}", "s.beta.in") == (404, None)
    listed = await api.call("GET", DOMAINS, auth=key_b, org_id=beta)
    assert [(d["domain"], d["is_default"]) for d in listed["items"]] == [("s.alpha.in", True)]
    assert (await api.call("GET", DOMAINS, auth=key_a, org_id=alpha))["items"] == []
    await api.call("GET", DOMAINS, auth=key_a, org_id=beta, expect=404)


async def test_header_in_path_links_answer_only_under_their_header(
    api: ApiClient, running: Redirector
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=("s.acme.in",))
    await add_domain(api, org_id, "s.acme.in")
    await api.call(
        "PUT", "/v1/orgs/{org_id}/header-in-path", auth=OPERATOR_TOKEN,
        json={"enabled": True, "ticket": "SUP-3"}, org_id=org_id,
    )  # fmt: skip
    bare = await api.new_campaign(key)
    refused = await api.render(
        key, expect=422, campaign_id=bare, recipient="+919800000001",
        template="Offer: {#var#}", values=[LONG_URL],
    )  # fmt: skip
    assert refused["error"] == "missing_header"

    campaign = await api.new_campaign(key, dlt_header="ACMEIN")
    rendered = await api.render(
        key, campaign_id=campaign, recipient="+919800000001", template="Offer: {#var#}",
        values=[LONG_URL],
    )  # fmt: skip
    code = rendered["links"][0]["code"]
    short = f"s.acme.in/ACMEIN/{code}"
    assert rendered["text"] == f"Offer: {short}"
    assert len(short) == 9 + 1 + 6 + 1 + 10  # the header counts
    assert rendered["characters"] == len("Offer: ") + len(short)
    assert rendered["length_change"]["characters"] == len(short) - len(LONG_URL)

    for _ in range(50):
        if (await get(running.url, f"/ACMEIN/{code}", "s.acme.in"))[0] == 302:
            break
        await asyncio.sleep(0.1)
    assert await get(running.url, f"/ACMEIN/{code}", "s.acme.in") == (302, LONG_URL)
    assert await get(running.url, f"/OTHERS/{code}", "s.acme.in") == (404, None)
    assert await get(running.url, f"/acmein/{code}", "s.acme.in") == (404, None)
    assert sample(running, "clicktrack_redirects_total", outcome="wrong_header") == 1

    # a slot too short for domain + header + code is refused with the real length
    too_long = await api.render(
        key, expect=422, campaign_id=campaign, recipient="+919800000001",
        template="Offer: {#var#}", values=[LONG_URL], var_limit=26,
    )  # fmt: skip
    assert (too_long["error"], too_long["length"]) == ("short_link_too_long", 27)


async def test_the_header_in_the_path_must_leave_room_in_the_dlt_slot(
    api: ApiClient, settings: Settings
) -> None:
    """A DLT variable holds 30 characters: domain, "/", code (10), and with the header in the
    path "/HEADER" (7) more, so a domain may have 19 characters, or 12 with the header."""
    assert (settings.api.dlt_var_limit, settings.links.code_length) == (30, 10)
    long_domain = "go.acmeretail.in"  # 16: fits without the header, not with it
    org_id, _ = await api.new_org("Acme")
    await add_domain(api, org_id, long_domain)
    switch = "/v1/orgs/{org_id}/header-in-path"
    refused = await api.call(
        "PUT", switch, auth=OPERATOR_TOKEN, json={"enabled": True, "ticket": "SUP-5"},
        expect=422, org_id=org_id,
    )  # fmt: skip
    assert refused["error"] == "domain_too_long"
    assert long_domain in refused["detail"] and "at most 12" in refused["detail"]
    org = await api.call("GET", "/v1/orgs/{org_id}", auth=OPERATOR_TOKEN, org_id=org_id)
    assert org["header_in_path"] is False  # nothing changed

    other_id, _ = await api.new_org("Beta")
    await add_domain(api, other_id, "s.beta.in")  # 9: room for the header
    await api.call(
        "PUT", switch, auth=OPERATOR_TOKEN, json={"enabled": True, "ticket": "SUP-6"},
        org_id=other_id,
    )  # fmt: skip
    refused = await api.call(
        "POST", DOMAINS, auth=OPERATOR_TOKEN, json={"domain": "go.betaretail.in"}, expect=422,
        org_id=other_id,
    )  # fmt: skip
    assert refused["error"] == "domain_too_long" and "at most 12" in refused["detail"]
    await add_domain(api, other_id, "sms.beta.in")  # 11

    status, _, err = await clicktrack(settings, "org", "header-in-path", str(org_id), "on")
    assert status != 0 and "domain_too_long" not in err and long_domain in err, err
    status, _, err = await clicktrack(settings, "org", "header-in-path", str(org_id), "off")
    assert status == 0, err


async def test_misses_are_counted_per_domain_day_and_reason_off_the_response_path(
    api: ApiClient, running: Redirector, settings: Settings, redis: aioredis.Redis
) -> None:
    alpha, key_a = await api.new_org("Alpha", tracking=True)
    beta, key_b = await api.new_org("Beta", tracking=True)
    await add_domain(api, alpha, "s.alpha.in")
    await add_domain(api, beta, "s.beta.in")
    campaign = await api.new_campaign(key_a)
    code_a = await mint_one(api, key_a, campaign, "+919800000001")
    code_b = await mint_one(api, key_b, await api.new_campaign(key_b), "+919800000002")
    for _ in range(50):
        if (await get(running.url, f"/{code_b['code']}", "s.beta.in"))[0] == 302:
            break
        await asyncio.sleep(0.1)
    taps = [
        (f"/{code_b['code']}", "s.alpha.in"),  # Beta's code on Alpha's domain
        ("/ZZZZZZZZZZ", "S.Alpha.in:443"),  # no such code (the host as a phone may send it)
        ("/ZZZZZZZZZY", "s.alpha.in"),
        ("/favicon.ico", "s.alpha.in"),  # not even a code
        ("/ZZZZZZZZZZ", "s.beta.in"),
        ("/ZZZZZZZZZZ", "evil.example"),  # not a short domain: refused before, not counted
    ]
    for path, host in taps:
        assert await get(running.url, path, host) == (404, None)
    links = await api.call("GET", "/v1/campaigns/{campaign_id}/links", auth=key_a,
                           campaign_id=campaign)  # fmt: skip
    await api.call("PATCH", "/v1/links/{link_id}", auth=key_a, json={"disabled": True},
                   link_id=links["items"][0]["id"])  # fmt: skip
    disabled = 0
    for _ in range(50):
        status, _ = await get(running.url, f"/{code_a['code']}", "s.alpha.in")
        if status == 404:
            disabled += 1
            break
        await asyncio.sleep(0.1)
    assert disabled == 1
    assert await get(running.url, f"/{code_a['code']}", "s.alpha.in") == (404, None)
    disabled += 1
    want = {
        ("s.alpha.in", "wrong_domain"): 1,
        ("s.alpha.in", "unknown"): 2,
        ("s.alpha.in", "malformed"): 1,
        ("s.alpha.in", "disabled"): disabled,
        ("s.beta.in", "unknown"): 1,
    }

    async def seen() -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for _, domain, reason, count in await misses.read(redis, datetime.now(UTC).date(), 2):
            found[(domain, reason)] = found.get((domain, reason), 0) + count  # 2 days: midnight
        return found

    assert await wait_for(seen, want) == want
    assert sample(running, "clicktrack_redirects_total", outcome="not_found") == 5
    status, out, err = await clicktrack(settings, "misses", "--days", "2", "--domain", "s.alpha.in")
    assert status == 0, err
    totals = sorted(line.split()[1:] for line in out.splitlines() if line.startswith("total"))
    assert totals == sorted([d, r, str(n)] for (d, r), n in want.items() if d == "s.alpha.in")
