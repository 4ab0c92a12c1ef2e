"""Who clicked and who did not, on the real Kafka, counter and Postgres: the non-clickers of a
campaign or a link are exactly its recipients minus its clickers, page after page and as CSV;
bot previews and taps after expiry make no clicker. Recipients are listed by their pseudonyms
(what codes and click events carry), in pseudonym order; `POST /v1/recipients/lookup` gives the
organisation its ids back."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_client import ApiClient
from tests.integration.reports.world import counted_total, publish
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

RECIPIENTS = ["+919800000001", "+919800000002", "+919800000003", "+919800000004",
              "+919800000005", "+919800000006", "=HYPERLINK(1)"]  # fmt: skip
"""p1 taps L1; p2 taps L1 and L2; p3's phone only previews (a bot); p4 taps after L1 expired;
p5 does nothing; p6 taps L2; the last (a formula, as a spreadsheet would read it) does nothing."""


async def listed(api: ApiClient, key: str, route: str, limit: int, **ids: int) -> list[Any]:
    """Every item of a recipient list, page after page."""
    items: list[Any] = []
    after = ""
    while True:
        query = f"?limit={limit}" + (f"&after={after.replace('+', '%2B')}" if after else "")
        page = await api.call("GET", route + query, auth=key, **ids)
        items += page["items"]
        if page["next_after"] is None:
            return items
        assert len(page["items"]) == limit
        after = page["next_after"]


async def test_non_clickers_are_the_recipients_minus_the_clickers(
    api: ApiClient,
    settings: Settings,
    api_settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    org_id, key = await api.new_org("Acme", tracking=True)
    vault = RecipientKeys(api_settings.api.recipient_key).vault(org_id)
    campaign = await api.new_campaign(key)
    links = [
        await api.new_link(key, campaign, "https://shop.example.in/a"),
        await api.new_link(key, campaign, "https://shop.example.in/b"),
    ]
    codes: dict[tuple[int, str], str] = {}
    for link in links:
        minted = await api.call(
            "POST", "/v1/links/{link_id}/recipients", auth=key,
            json={"recipients": RECIPIENTS}, link_id=link,
        )  # fmt: skip
        codes.update({(link, c["recipient"]): c["code"] for c in minted["codes"]})
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    p = RECIPIENTS
    pseudonym = {r: vault.pseudonym(r) for r in RECIPIENTS}  # what the redirector publishes

    def tap(link: int, who: str, minutes: int, **extra: Any) -> Any:
        return make_event(
            occurred_at=(at + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
            code=codes[(link, who)], link_id=link, org_id=org_id, campaign_id=campaign,
            campaign_kind="one_time", recipient_id=pseudonym[who],
            visitor_id=f"r:{pseudonym[who]}", **extra,
        )  # fmt: skip

    clicks = [
        tap(links[0], p[0], 0),
        tap(links[0], p[1], 1),
        tap(links[1], p[1], 5),
        tap(links[0], p[1], 9, is_bot=True, bot_reason="ua:WhatsApp"),
        tap(links[0], p[2], 2, is_bot=True, bot_reason="ua:WhatsApp"),
        tap(links[0], p[3], 3, outcome="fallback"),
        tap(links[1], p[5], 4),
    ]
    await publish(producer, settings.kafka.clicks_topic, clicks)
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: counted_total(pool, org_id), 6) == 6
        events = "SELECT count(*) FROM processed_events"  # the tap after expiry too
        assert await wait_for(lambda: pool.fetchval(events), len(clicks)) == len(clicks)
    finally:
        await counter.stop()

    def by_pseudonym(*who: str) -> list[str]:
        return sorted(pseudonym[w] for w in who)

    base = "/v1/campaigns/{campaign_id}"
    got = await listed(api, key, base + "/clickers", 2, campaign_id=campaign)
    first = (at + timedelta(minutes=1)).isoformat()
    assert sorted(got, key=lambda c: p[[pseudonym[r] for r in p].index(c["recipient"])]) == [
        {"recipient": pseudonym[p[0]], "clicks": 1, "bot_clicks": 0, "after_expiry": 0,
         "first_click": at.isoformat(), "last_click": at.isoformat()},
        {"recipient": pseudonym[p[1]], "clicks": 2, "bot_clicks": 1, "after_expiry": 0,
         "first_click": first, "last_click": (at + timedelta(minutes=5)).isoformat()},
        {"recipient": pseudonym[p[5]], "clicks": 1, "bot_clicks": 0, "after_expiry": 0,
         "first_click": (at + timedelta(minutes=4)).isoformat(),
         "last_click": (at + timedelta(minutes=4)).isoformat()},
    ]  # fmt: skip
    assert [c["recipient"] for c in got] == by_pseudonym(p[0], p[1], p[5])
    clickers = {c["recipient"] for c in got}
    for limit in (1, 2, 100):
        non = await listed(api, key, base + "/non-clickers", limit, campaign_id=campaign)
        assert [n["recipient"] for n in non] == sorted(set(pseudonym.values()) - clickers), limit
    assert [n["recipient"] for n in non] == by_pseudonym(p[2], p[3], p[4], RECIPIENTS[6])
    lookup = {"pseudonyms": [n["recipient"] for n in non]}
    ids = await api.call("POST", "/v1/recipients/lookup", auth=key, json=lookup)
    assert sorted(ids["recipients"].values()) == sorted([p[2], p[3], p[4], RECIPIENTS[6]])

    one = "/v1/links/{link_id}"
    got = await listed(api, key, one + "/clickers", 100, link_id=links[1])
    assert [c["recipient"] for c in got] == by_pseudonym(p[1], p[5])
    assert {c["clicks"] for c in got} == {1}
    non = await listed(api, key, one + "/non-clickers", 3, link_id=links[1])
    assert [n["recipient"] for n in non] == by_pseudonym(p[0], p[2], p[3], p[4], RECIPIENTS[6])

    headers = {"Authorization": f"Bearer {key}"}
    async with api.http.get(f"/v1/campaigns/{campaign}/non-clickers.csv", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
        rows = list(csv.reader(io.StringIO(await r.text())))
    # pseudonyms only: no phone number, and no cell a spreadsheet would run as a formula
    assert rows == [["recipient"], *([r] for r in by_pseudonym(p[2], p[3], p[4], RECIPIENTS[6]))]
    async with api.http.get(f"/v1/campaigns/{campaign}/clickers.csv", headers=headers) as r:
        rows = list(csv.reader(io.StringIO(await r.text())))
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    assert rows[0] == ["recipient", "clicks", "bot_clicks", "after_expiry", "first_click",
                       "last_click"]  # fmt: skip
    assert [pseudonym[p[1]], "2", "1", "0", (at + timedelta(minutes=1)).strftime(stamp),
            (at + timedelta(minutes=5)).strftime(stamp)] in rows  # fmt: skip
    assert [r[0] for r in rows[1:]] == by_pseudonym(p[0], p[1], p[5])

    # another organisation sees none of it
    _, theirs = await api.new_org("Them")
    for route in (base + "/clickers", base + "/non-clickers"):
        await api.call("GET", route, auth=theirs, expect=404, campaign_id=campaign)
    bad = await api.call(
        "GET", base + "/clickers?limit=0", auth=key, expect=422, campaign_id=campaign
    )
    assert bad["error"] == "invalid_query"
