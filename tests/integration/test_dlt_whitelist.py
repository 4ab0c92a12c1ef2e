"""The DLT pre-flight through the API: rendering refuses a short domain, header or plain URL the
organisation has not whitelisted (naming the entry to add) and passes once it is added; the
dry-run lists what to whitelist; CSV import (dry run, all or nothing); typed variables whose
errors name the slot."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.integration.api_client import LONG_URL, OPERATOR_TOKEN, ApiClient

pytestmark = pytest.mark.integration

WHITELIST = "/v1/orgs/{org_id}/dlt-whitelist"
CHECK = "/v1/render/whitelist-check"
TYPED = "Dear {#alphanumeric#}, pay Rs {#numeric#} at {#url#} or call {#cbn#} -ACME"


async def whitelist(api: ApiClient, org_id: int, value: str, **extra: Any) -> Any:
    return await api.call(
        "POST", WHITELIST, auth=OPERATOR_TOKEN, json={"value": value, **extra}, expect=201,
        org_id=org_id,
    )  # fmt: skip


async def branded(api: ApiClient) -> tuple[int, str, int]:
    """An organisation with tracking on, its own short domain, and a campaign sent under the
    header ACMEIN."""
    org_id, key = await api.new_org("Acme", tracking=True)
    await api.call(
        "POST", "/v1/orgs/{org_id}/domains", auth=OPERATOR_TOKEN, json={"domain": "s.acme.in"},
        expect=201, org_id=org_id,
    )  # fmt: skip
    return org_id, key, await api.new_campaign(key, dlt_header="ACMEIN")


async def test_a_short_link_needs_its_domain_and_header_whitelisted(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    org_id, key, campaign = await branded(api)
    message = {
        "template": "Offer: {#url#} -ACME", "values": [LONG_URL], "campaign_id": campaign,
        "recipient": "+919800000001",
    }  # fmt: skip
    check = await api.call("POST", CHECK, auth=key, json={"template": message["template"],
                                                          "campaign_id": campaign})  # fmt: skip
    assert check == {
        "tracking": True,
        "enforced": True,
        "ready": False,
        "needed": [{"kind": "short_domain", "value": "s.acme.in", "header": "ACMEIN",
                    "whitelisted": False, "dlt_ref": None}],
    }  # fmt: skip

    refused = await api.render(key, expect=422, **message)
    assert {k: refused[k] for k in ("error", "kind", "entry", "header", "slot")} == {
        "error": "url_not_whitelisted",
        "kind": "short_domain",
        "entry": "s.acme.in",
        "header": "ACMEIN",
        "slot": 0,
    }
    assert "s.acme.in with the header ACMEIN" in refused["detail"]
    await whitelist(api, org_id, "s.acme.in", header="OTHERS", dlt_ref="DLT-1")
    assert (await api.render(key, expect=422, **message))["error"] == "url_not_whitelisted"
    assert await pool.fetchval("SELECT count(*) FROM codes") == 0  # refused: nothing minted

    added = await whitelist(
        api, org_id, "s.acme.in", header="ACMEIN", dlt_ref="DLT-2", whitelisted_on="2024-10-01"
    )
    assert added["added"] == [{"kind": "short_domain", "value": "s.acme.in", "header": "ACMEIN",
                               "dlt_ref": "DLT-2", "whitelisted_on": "2024-10-01"}]  # fmt: skip
    rendered = await api.render(key, **message)
    assert rendered["text"] == f"Offer: s.acme.in/{rendered['links'][0]['code']} -ACME"
    check = await api.call("POST", CHECK, auth=key, json={"template": message["template"],
                                                          "campaign_id": campaign})  # fmt: skip
    assert (check["ready"], check["needed"][0]["dlt_ref"]) == (True, "DLT-2")


async def test_a_plain_url_needs_a_whitelisted_prefix(api: ApiClient) -> None:
    org_id, key = await api.new_org("Acme")  # tracking off: links are sent as they are
    message = {"template": "Offer: {#url#}", "values": ["www.Acme.in/sale?x=1"]}
    refused = await api.render(key, expect=422, **message)
    assert (refused["error"], refused["kind"], refused["entry"]) == (
        "url_not_whitelisted", "url", "www.acme.in/sale?x=1",
    )  # fmt: skip
    await whitelist(api, org_id, "https://www.acme.in.evil.example/")
    await whitelist(api, org_id, "https://www.acme.in")  # a bare host: that host only
    assert (await api.render(key, **message))["text"] == "Offer: www.Acme.in/sale?x=1"
    check = await api.call("POST", CHECK, auth=key, json=message)
    assert check["needed"] == [{"kind": "url", "value": "https://www.acme.in", "header": None,
                                "whitelisted": True, "dlt_ref": None}]  # fmt: skip


async def test_a_whitelist_is_imported_from_csv_all_or_nothing(api: ApiClient) -> None:
    org_id, _ = await api.new_org("Acme")
    sheet = (
        "Value,Header,DLT_Ref,Whitelisted_On\n"
        "s.acme.in,ACMEIN;ACMEOF,REF-7,01/10/2024\n"
        "https://shop.acme.in/offers/,,REF-8,2024-10-02\n"
        "\n"
        "s.acme.in,ACMEIN,REF-7,01/10/2024\n"
    )
    route = WHITELIST + "/import"
    dry = await api.call(
        "POST", route, auth=OPERATOR_TOKEN, json={"csv": sheet, "dry_run": True, "ticket": "T-1"},
        org_id=org_id,
    )  # fmt: skip
    assert (dry["dry_run"], len(dry["added"]), len(dry["kept"])) == (True, 3, 1)
    assert (await api.call("GET", WHITELIST, auth=OPERATOR_TOKEN, org_id=org_id))["items"] == []

    bad = sheet + "not a domain!,,,\ns.acme.in,TOOLONG1,,\n"
    refused = await api.call(
        "POST", route, auth=OPERATOR_TOKEN, json={"csv": bad}, expect=422, org_id=org_id
    )
    assert refused["error"] == "invalid_csv"
    assert "line 6:" in refused["detail"] and "line 7:" in refused["detail"]
    assert (await api.call("GET", WHITELIST, auth=OPERATOR_TOKEN, org_id=org_id))["items"] == []

    done = await api.call(
        "POST", route, auth=OPERATOR_TOKEN, json={"csv": sheet, "ticket": "T-2"}, org_id=org_id
    )
    assert (done["dry_run"], len(done["added"]), len(done["kept"])) == (False, 3, 1)
    items = (await api.call("GET", WHITELIST, auth=OPERATOR_TOKEN, org_id=org_id))["items"]
    assert [(i["kind"], i["value"], i["header"], i["dlt_ref"], i["whitelisted_on"])
            for i in items] == [
        ("url", "https://shop.acme.in/offers/", None, "REF-8", "2024-10-02"),
        ("short_domain", "s.acme.in", "ACMEIN", "REF-7", "2024-10-01"),
        ("short_domain", "s.acme.in", "ACMEOF", "REF-7", "2024-10-01"),
    ]  # fmt: skip
    again = await api.call("POST", route, auth=OPERATOR_TOKEN, json={"csv": sheet}, org_id=org_id)
    assert (len(again["added"]), len(again["kept"])) == (0, 4)

    await api.call(
        "DELETE", WHITELIST + "/{entry_id}?ticket=T-3", auth=OPERATOR_TOKEN, org_id=org_id,
        entry_id=items[0]["id"],
    )  # fmt: skip
    audit = await api.call("GET", "/v1/audit?org_id={org_id}", auth=OPERATOR_TOKEN, org_id=org_id)
    assert [(e["action"], e["ticket"], e["detail"].get("added")) for e in audit["items"]] == [
        ("org.created", None, None),
        ("key.issued", None, None),
        ("whitelist.imported", "T-2", 3),
        ("whitelist.removed", "T-3", None),
    ]


async def test_typed_variables_errors_name_the_slot(api: ApiClient) -> None:
    _, key = await api.new_org("Acme", tracking=True, whitelisted=("s.ex.in",))
    campaign = await api.new_campaign(key)
    good = ["Asha", "499", LONG_URL, "+919800000001"]

    async def refused(values: list[str], **extra: Any) -> Any:
        return await api.render(
            key, expect=422, template=TYPED, values=values, campaign_id=campaign, **extra
        )

    got = await refused(["Asha K", *good[1:]])
    assert (got["error"], got["slot"], got["tag"]) == ("invalid_var_value", 0, "alphanumeric")
    assert got["detail"] == "slot 0 is {#alphanumeric#}: it must hold letters and digits only"
    got = await refused([good[0], "pay.in/499", *good[2:]])
    assert (got["error"], got["slot"], got["position"]) == ("link_outside_url_var", 1, 0)
    got = await refused([*good[:2], f"see {LONG_URL}", good[3]])
    assert (got["error"], got["slot"], got["tag"]) == ("invalid_var_value", 2, "url")
    got = await refused([*good[:3], "call me"])
    assert (got["error"], got["slot"], got["tag"]) == ("invalid_var_value", 3, "cbn")

    rendered = await api.render(
        key, template=TYPED, values=good, campaign_id=campaign, recipient="r1"
    )
    assert rendered["slot_types"] == ["alphanumeric", "numeric", "url", "cbn"]
    assert rendered["warnings"] == []
    assert rendered["links"][0]["slot"] == 2
    # the same template registered untyped, its tags in a separate section
    plain = TYPED.replace("{#alphanumeric#}", "{#var#}").replace("{#numeric#}", "{#var#}")
    plain = plain.replace("{#url#}", "{#var#}").replace("{#cbn#}", "{#var#}")
    types = ["alphanumeric", "number", "url", "cbn"]
    got = await api.render(
        key, expect=422, template=plain, slot_types=types, values=["Asha K", *good[1:]],
        campaign_id=campaign,
    )  # fmt: skip
    assert (got["error"], got["slot"]) == ("invalid_var_value", 0)
    legacy = await api.render(key, template=plain, values=good, campaign_id=campaign)
    assert legacy["slot_types"] == ["var"] * 4
    assert legacy["warnings"][0].startswith("the template has untyped {#var#} slots")
    got = await api.render(
        key, expect=422, template=TYPED, slot_types=types, values=good, campaign_id=campaign
    )
    assert got["error"] == "slot_types_mismatch"
