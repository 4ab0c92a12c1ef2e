"""Who clicked and who did not, on the real Kafka, counter and Postgres: the non-clickers of a
campaign or a link are exactly its recipients minus its clickers, page after page and as CSV;
bot previews and taps after expiry make no clicker. Codes and click events carry pseudonyms; the
lists show the sender's own ids (opened for its organisation alone) beside them, in pseudonym
order, and an erased recipient's clicks stay, under no id."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

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
        query = f"?limit={limit}" + (f"&after={after}" if after else "")
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

    def in_order(*who: str) -> list[dict[str, str]]:
        """The recipients as the lists name them, in the lists' order (of the pseudonyms)."""
        return [{"recipient": w, "pseudonym": pseudonym[w]} for w in sorted(who, key=pseudonym.get)]

    def named(items: list[Any]) -> list[dict[str, str]]:
        return [{"recipient": i["recipient"], "pseudonym": i["pseudonym"]} for i in items]

    base = "/v1/campaigns/{campaign_id}"
    got = await listed(api, key, base + "/clickers", 2, campaign_id=campaign)
    first = (at + timedelta(minutes=1)).isoformat()
    assert sorted(got, key=lambda c: p.index(c["recipient"])) == [
        {"recipient": p[0], "pseudonym": pseudonym[p[0]], "clicks": 1, "bot_clicks": 0,
         "after_expiry": 0, "first_click": at.isoformat(), "last_click": at.isoformat()},
        {"recipient": p[1], "pseudonym": pseudonym[p[1]], "clicks": 2, "bot_clicks": 1,
         "after_expiry": 0, "first_click": first,
         "last_click": (at + timedelta(minutes=5)).isoformat()},
        {"recipient": p[5], "pseudonym": pseudonym[p[5]], "clicks": 1, "bot_clicks": 0,
         "after_expiry": 0, "first_click": (at + timedelta(minutes=4)).isoformat(),
         "last_click": (at + timedelta(minutes=4)).isoformat()},
    ]  # fmt: skip
    assert named(got) == in_order(p[0], p[1], p[5])
    clickers = {c["recipient"] for c in got}
    for limit in (1, 2, 100):
        non = await listed(api, key, base + "/non-clickers", limit, campaign_id=campaign)
        assert named(non) == in_order(*(set(RECIPIENTS) - clickers)), limit
    assert named(non) == in_order(p[2], p[3], p[4], RECIPIENTS[6])

    one = "/v1/links/{link_id}"
    got = await listed(api, key, one + "/clickers", 100, link_id=links[1])
    assert named(got) == in_order(p[1], p[5])
    assert [c["clicks"] for c in got] == [1, 1]
    non = await listed(api, key, one + "/non-clickers", 3, link_id=links[1])
    assert named(non) == in_order(p[0], p[2], p[3], p[4], RECIPIENTS[6])

    headers = {"Authorization": f"Bearer {key}"}
    async with api.http.get(f"/v1/campaigns/{campaign}/non-clickers.csv", headers=headers) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
        rows = list(csv.reader(io.StringIO(await r.text())))
    # a cell a spreadsheet would run as a formula gets a leading quote; a phone number does not
    safe = {w: "'" + w if w.startswith("=") else w for w in RECIPIENTS}
    assert rows == [
        ["recipient", "pseudonym"],
        *([safe[n["recipient"]], n["pseudonym"]] for n in in_order(p[2], p[3], p[4], p[6])),
    ]
    async with api.http.get(f"/v1/campaigns/{campaign}/clickers.csv", headers=headers) as r:
        rows = list(csv.reader(io.StringIO(await r.text())))
    stamp = "%Y-%m-%dT%H:%M:%S.000Z"
    assert rows[0] == ["recipient", "pseudonym", "clicks", "bot_clicks", "after_expiry",
                       "first_click", "last_click"]  # fmt: skip
    assert [p[1], pseudonym[p[1]], "2", "1", "0", (at + timedelta(minutes=1)).strftime(stamp),
            (at + timedelta(minutes=5)).strftime(stamp)] in rows  # fmt: skip
    assert [r[:2] for r in rows[1:]] == [list(n.values()) for n in in_order(p[0], p[1], p[5])]

    # Erased, p5 keeps its click in the list, under no id; counts do not move.
    erased = await api.call(
        "DELETE", "/v1/recipients/{recipient}", auth=key, recipient=quote(p[5], safe="")
    )
    assert erased == {"erased": 1, "unknown": 0, "codes": 2}
    got = await listed(api, key, base + "/clickers", 100, campaign_id=campaign)
    assert sorted((c["recipient"] or "", c["clicks"]) for c in got) == [
        ("", 1), (p[0], 1), (p[1], 2),
    ]  # fmt: skip
    assert pseudonym[p[5]] not in {c["pseudonym"] for c in got}
    non = await listed(api, key, base + "/non-clickers", 100, campaign_id=campaign)
    assert named(non) == in_order(p[2], p[3], p[4], RECIPIENTS[6])

    # another organisation sees none of it
    _, theirs = await api.new_org("Them")
    for route in (base + "/clickers", base + "/non-clickers"):
        await api.call("GET", route, auth=theirs, expect=404, campaign_id=campaign)
    bad = await api.call(
        "GET", base + "/clickers?limit=0", auth=key, expect=422, campaign_id=campaign
    )
    assert bad["error"] == "invalid_query"
    # the cursor is a pseudonym: a phone number there is refused, not looked up
    bad = await api.call(
        "GET", base + "/clickers?after=%2B919800000001", auth=key, expect=422,
        campaign_id=campaign,
    )  # fmt: skip
    assert bad["error"] == "invalid_query"
