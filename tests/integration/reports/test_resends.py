"""Resend to non-clickers on the real Kafka, counter and Postgres: one call makes the resend, its
audience is exactly the original's non-clickers (or a link's non-openers), each message carries
the code its recipient was sent, and the audience's clicks since land on the resend (as well as
on the original's links, where the reused codes count)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_client import OPERATOR_TOKEN, SHORT_DOMAIN, WHITELISTED, ApiClient
from tests.integration.reports.test_clickers import listed
from tests.integration.reports.world import publish
from tests.integration.test_cli_operator import clicktrack
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

PEOPLE = ["p1", "p2", "p3", "p4", "p5"]
"""Before the resend: p1 taps A, p2 taps B, p3's phone previews A (a bot), p4 taps A after it
expired, p5 does nothing. So the non-clickers are p3, p4, p5; B's non-openers p1, p3, p4, p5."""
A, B = "https://shop.example.in/a", "https://shop.example.in/b"
TEMPLATE = "Last day for your offer: {#var#} -ACME"
RESENDS = "/v1/campaigns/{campaign_id}/resends"


async def count(
    settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer, clicks: list[Any]
) -> None:
    """Publish `clicks` and run a counter until every one of them is counted."""
    await publish(producer, settings.kafka.clicks_topic, clicks)
    counter = Counter(settings)
    await counter.start()
    try:
        events = "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::uuid[])"
        ids = [c.event_id for c in clicks]
        assert await wait_for(lambda: pool.fetchval(events, ids), len(ids)) == len(ids)
    finally:
        await counter.stop()


async def test_a_resend_to_non_clickers_reuses_their_codes_and_its_clicks_land_on_it(
    api: ApiClient, settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True, whitelisted=WHITELISTED)
    campaign = await api.new_campaign(key)
    links = {A: await api.new_link(key, campaign, A), B: await api.new_link(key, campaign, B)}
    codes: dict[tuple[str, str], str] = {}
    for url, link in links.items():
        minted = await api.call(
            "POST", "/v1/links/{link_id}/recipients", auth=key, json={"recipients": PEOPLE},
            link_id=link,
        )  # fmt: skip
        codes.update({(url, c["recipient"]): c["code"] for c in minted["codes"]})
    pseudonym = await api.pseudonyms(key)  # what the redirector publishes for a recipient
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def tap(url: str, who: str, minutes: int, **extra: Any) -> Any:
        return make_event(
            occurred_at=(at + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
            code=codes[(url, who)], link_id=links[url], org_id=org_id, campaign_id=campaign,
            campaign_kind="one_time", recipient_id=pseudonym(who),
            visitor_id=f"r:{pseudonym(who)}", **extra,
        )  # fmt: skip

    await count(settings, pool, producer, [
        tap(A, "p1", 0), tap(B, "p2", 1),
        tap(A, "p3", 2, is_bot=True, bot_reason="ua:WhatsApp"), tap(A, "p4", 3, outcome="gone"),
    ])  # fmt: skip

    # refused: a link that is not the campaign's, another campaign's link, another org, no body
    body = {"name": "Reminder", "template": TEMPLATE, "values": [A]}
    bad = await api.call("POST", RESENDS, auth=key, json={**body, "values": ["https://shop.example.in/new"]},
                         expect=422, campaign_id=campaign)  # fmt: skip
    assert bad["error"] == "link_not_in_campaign"
    other = await api.new_link(key, await api.new_campaign(key), A)
    bad = await api.call("POST", RESENDS, auth=key, json={**body, "link_id": other}, expect=422,
                         campaign_id=campaign)  # fmt: skip
    assert bad["error"] == "invalid_link"
    fixed = {**body, "template": f"See {B} or {{#var#}} -ACME"}  # a link outside the slots
    bad = await api.call("POST", RESENDS, auth=key, json=fixed, expect=422, campaign_id=campaign)
    assert bad["error"] == "link_outside_var"
    _, theirs = await api.new_org("Them", tracking=True)
    await api.call("POST", RESENDS, auth=theirs, json=body, expect=404, campaign_id=campaign)
    bad = await api.call("POST", RESENDS, auth=key, json={"name": "x"}, expect=422,
                         campaign_id=campaign)  # fmt: skip
    assert bad["error"] == "missing_field"
    assert await pool.fetchval("SELECT count(*) FROM resends") == 0

    # made: the audience is the non-clickers, each message carries the recipient's first code
    made = await api.call("POST", RESENDS, auth=key, json={**body, "limit": 2}, expect=201,
                          campaign_id=campaign)  # fmt: skip
    resend = made["campaign"]["id"]
    assert (made["campaign"]["kind"], made["campaign"]["parent_id"]) == ("resend", campaign)
    assert made["resend"] == {"parent_id": campaign, "link_id": None, "audience": 3,
                              "clicked": 0, "total": 0, "bots": 0, "after_expiry": 0}  # fmt: skip
    shown = [(m["recipient"], m["text"]) for m in made["messages"]]
    order = sorted(["p3", "p4", "p5"], key=pseudonym)  # pages go in pseudonym order
    assert shown == [
        (who, TEMPLATE.replace("{#var#}", f"{SHORT_DOMAIN}/{codes[(A, who)]}")) for who in order[:2]
    ]
    assert made["next_after"] == pseudonym(order[1])
    rest = await api.call("GET", "/v1/campaigns/{campaign_id}/messages?after={after}&limit=2",
                          auth=key, campaign_id=resend, after=made["next_after"])  # fmt: skip
    assert [(m["recipient"], m["segments"]) for m in rest["items"]] == [(order[2], 1)]
    assert rest["items"][0]["text"].endswith(f"{codes[(A, order[2])]} -ACME")
    assert rest["next_after"] is None
    assert await pool.fetchval(
        "SELECT count(*) FROM codes WHERE link_id = ANY($1::bigint[])", list(links.values())
    ) == 2 * len(PEOPLE)  # nothing minted
    await api.call("GET", "/v1/campaigns/{campaign_id}/messages", auth=key, expect=404,
                   campaign_id=campaign)  # fmt: skip
    base = "/v1/campaigns/{campaign_id}"
    assert await listed(api, key, base + "/clickers", 100, campaign_id=resend) == []
    non = await listed(api, key, base + "/non-clickers", 2, campaign_id=resend)
    assert [n["recipient"] for n in non] == order
    assert [n["pseudonym"] for n in non] == [pseudonym(who) for who in order]

    # non-openers of B: whoever did not click B, p1 (who clicked A) included
    by_link = await api.call("POST", RESENDS, auth=key, expect=201, campaign_id=campaign,
                             json={"name": "B again", "template": TEMPLATE, "values": [B],
                                   "link_id": links[B], "limit": 0})  # fmt: skip
    assert by_link["resend"]["audience"] == 4 and by_link["messages"] == []
    b_resend = by_link["campaign"]["id"]
    non = await listed(api, key, base + "/non-clickers", 100, campaign_id=b_resend)
    assert [n["recipient"] for n in non] == sorted(["p1", "p3", "p4", "p5"], key=pseudonym)

    # after the resends: p3 taps A twice, p5's phone previews A, p1 taps A again, p4 taps B
    later = 30
    await count(settings, pool, producer, [
        tap(A, "p3", later), tap(A, "p3", later + 1),
        tap(A, "p5", later + 2, is_bot=True, bot_reason="head"),
        tap(A, "p1", later + 3), tap(B, "p4", later + 4),
    ])  # fmt: skip
    report = await api.call("GET", base + "/report", auth=key, campaign_id=resend)
    # the audience's taps on the codes the resend carried, since: p3 twice on A, p5's preview;
    # p4's tap on B is not this resend's (its message carried A), p1 is not in its audience
    assert report["resend"] == {"parent_id": campaign, "link_id": None, "audience": 3,
                                "clicked": 1, "total": 2, "bots": 1, "after_expiry": 0}  # fmt: skip
    clickers = await listed(api, key, base + "/clickers", 1, campaign_id=resend)
    first = (at + timedelta(minutes=later)).isoformat()
    last = (at + timedelta(minutes=later + 1)).isoformat()
    assert clickers == [{"recipient": "p3", "pseudonym": pseudonym("p3"), "clicks": 2,
                         "bot_clicks": 0, "after_expiry": 0, "first_click": first,
                         "last_click": last}]  # fmt: skip
    non = await listed(api, key, base + "/non-clickers", 1, campaign_id=resend)
    assert [n["recipient"] for n in non] == sorted(["p4", "p5"], key=pseudonym)
    b_report = await api.call("GET", base + "/report", auth=key, campaign_id=b_resend)
    assert b_report["resend"] == {
        "parent_id": campaign, "link_id": links[B], "audience": 4, "clicked": 1, "total": 1,
        "bots": 0, "after_expiry": 0,
    }  # fmt: skip
    non = await listed(api, key, base + "/non-clickers", 100, campaign_id=b_resend)
    assert [n["recipient"] for n in non] == sorted(["p1", "p3", "p5"], key=pseudonym)
    # the original: the reused codes count on its links, as every resend's do; its family shows
    # each resend's own numbers
    original = await api.call("GET", base + "/report", auth=key, campaign_id=campaign)
    assert {k: original["totals"][k] for k in ("total", "unique", "bots", "after_expiry")} == {
        "total": 6, "unique": 4, "bots": 2, "after_expiry": 1}  # fmt: skip
    assert original["resend"] is None
    family = {f["campaign"]["id"]: f["resend"] for f in original["family"]}
    assert family == {campaign: None, resend: report["resend"], b_resend: b_report["resend"]}

    # the lists as CSV
    headers = {"Authorization": f"Bearer {key}"}
    async with api.http.get(f"/v1/campaigns/{resend}/clickers.csv", headers=headers) as r:
        rows = list(csv.reader(io.StringIO(await r.text())))
    assert [row[:5] for row in rows] == [
        ["recipient", "pseudonym", "clicks", "bot_clicks", "after_expiry"],
        ["p3", pseudonym("p3"), "2", "0", "0"],
    ]
    async with api.http.get(f"/v1/campaigns/{resend}/non-clickers.csv", headers=headers) as r:
        assert list(csv.reader(io.StringIO(await r.text()))) == [
            ["recipient", "pseudonym"],
            *([who, pseudonym(who)] for who in sorted(["p4", "p5"], key=pseudonym)),
        ]

    # a resend of that resend goes to its audience who did not click since: p4 and p5
    again = await api.call("POST", RESENDS, auth=key, expect=201, campaign_id=resend,
                           json={**body, "name": "Really the last day", "limit": 10})  # fmt: skip
    assert (again["campaign"]["parent_id"], again["resend"]["audience"]) == (resend, 2)
    assert [m["recipient"] for m in again["messages"]] == sorted(["p4", "p5"], key=pseudonym)
    assert again["next_after"] is None

    # the CLI: the same call through the API, every message as CSV; only p5 has clicked nothing
    status, out, err = await clicktrack(
        settings, "resend", str(campaign), "--name", "From the shell", "--template", TEMPLATE,
        "--value", A, "--api", api.url, env={"CLICKTRACK_API_KEY": key},
    )  # fmt: skip
    assert status == 0, err
    assert list(csv.reader(io.StringIO(out))) == [
        ["recipient", "text", "encoding", "segments"],
        ["p5", TEMPLATE.replace("{#var#}", f"{SHORT_DOMAIN}/{codes[(A, 'p5')]}"), "GSM-7", "1"],
    ]
    assert err.startswith("resend campaign ") and err.endswith(" made: 1 recipients\n")
    status, _, err = await clicktrack(
        settings, "resend", str(campaign), "--name", "x", "--template", TEMPLATE,
        "--value", "https://elsewhere.in/", "--api", api.url, env={"CLICKTRACK_API_KEY": key},
    )  # fmt: skip
    assert status == 2 and "link_not_in_campaign" in err

    # tracking off: no resend (409), and nothing made
    await api.call("PUT", "/v1/orgs/{org_id}/link-tracking", auth=OPERATOR_TOKEN,
                   json={"enabled": False}, org_id=org_id)  # fmt: skip
    off = await api.call("POST", RESENDS, auth=key, json=body, expect=409, campaign_id=campaign)
    assert off["error"] == "tracking_disabled"
    assert await pool.fetchval("SELECT count(*) FROM resends") == 4
