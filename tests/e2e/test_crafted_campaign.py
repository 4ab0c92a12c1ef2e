"""One crafted campaign, counted by the real counter, read three ways: the JSON report, the CSV
and the dashboard in headless Chromium. Two links; recipients who click one link, both, or
none; clicks either side of an Indian midnight (the organisation is in Asia/Kolkata) and in the
hour London repeats when its clocks go back; taps after a link expired; bots of every reason.
Every number is the one computed by hand below, in all three."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from shared.orgs import set_time_zone
from shared.settings import Settings
from tests.e2e.browser import chromium
from tests.e2e.test_dashboard_browser import WAIT_S, Running, _cells, _rows, running
from tests.helpers import wait_for
from tests.integration.reports.world import publish
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration
__all__ = ["running"]  # the fixture, shared with the other dashboard test


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings with a long deduplication window: the counter refuses clicks older
    than it, and this test counts clicks of a fixed date (London's DST change in October). The
    visitor rows are kept longer still (the period must exceed the window)."""
    return settings.changed(DEDUP_RETENTION_DAYS=400, VISITOR_RETENTION_DAYS=800)


PEOPLE = ["asha", "bala", "chitra", "dev", "esha"]
"""asha taps link 1 (and link 2 during London's repeated hour), bala taps both links, chitra
never taps, dev's phone only previews (a bot), esha taps link 1 after it expired."""


async def test_a_crafted_campaign_has_the_same_numbers_in_json_csv_and_dashboard(
    running: Running, settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    api = running.client
    org_id, key = await api.new_org("Crafted", tracking=True)
    await set_time_zone(pool, org_id, "Asia/Kolkata")
    campaign = await api.new_campaign(key)
    links = [
        await api.new_link(key, campaign, "https://shop.example.in/one"),
        await api.new_link(key, campaign, "https://shop.example.in/two"),
    ]
    codes: dict[tuple[int, str], str] = {}
    for link in links:
        minted = await api.call(
            "POST", "/v1/links/{link_id}/recipients", auth=key,
            json={"recipients": PEOPLE}, link_id=link,
        )  # fmt: skip
        codes.update({(link, c["recipient"]): c["code"] for c in minted["codes"]})
    pseudonym = await api.pseudonyms(key)  # what the redirector publishes for a recipient
    # midnight in India three days ago: 18:30 UTC
    midnight = datetime.now(UTC).replace(hour=18, minute=30, second=0, microsecond=0)
    midnight -= timedelta(days=3)

    def tap(link: int, who: str, at: datetime, **extra: Any) -> Any:
        return make_event(
            occurred_at=at.isoformat().replace("+00:00", "Z"), code=codes[(links[link], who)],
            link_id=links[link], org_id=org_id, campaign_id=campaign, campaign_kind="one_time",
            recipient_id=pseudonym(who), visitor_id=f"r:{pseudonym(who)}", **extra,
        )  # fmt: skip

    minute = timedelta(minutes=1)
    london = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST; an hour later 01:30 GMT
    clicks = [
        tap(0, "asha", midnight - minute),  # 23:59 in India
        tap(0, "bala", midnight),  # 00:00 the next day
        tap(1, "bala", midnight + 10 * minute),
        tap(0, "bala", midnight + 30 * minute),
        tap(1, "asha", london),
        tap(1, "asha", london + 60 * minute),
        tap(0, "dev", midnight - 30 * minute, is_bot=True, bot_reason="ua:WhatsApp"),
        tap(0, "dev", midnight - 25 * minute, is_bot=True, bot_reason="referer:proofpoint"),
        tap(0, "dev", midnight - 20 * minute, is_bot=True, bot_reason="cidr:198.51.100.0/24"),
        tap(0, "dev", midnight + 5 * minute, is_bot=True, bot_reason="head"),
        tap(0, "esha", midnight + 15 * minute, outcome="fallback"),
        tap(0, "esha", midnight + 20 * minute, outcome="gone"),
    ]
    await publish(producer, settings.kafka.clicks_topic, clicks)
    counted = "SELECT count(*) FROM processed_events"
    assert await wait_for(lambda: pool.fetchval(counted), len(clicks)) == len(clicks)

    # the JSON report, days in the organisation's zone by default
    day = (midnight - timedelta(days=1)).date()
    query = f"?from={day}&to={day + timedelta(days=3)}&bucket=day"
    got = await api.call("GET", f"/v1/campaigns/{{campaign_id}}/report{query}", auth=key,
                         campaign_id=campaign)  # fmt: skip
    reasons = {"user_agent": 1, "referrer": 1, "network": 1, "head": 1, "other": 0}
    everything = {"total": 6, "unique": 2, "bots": 4, "after_expiry": 2, "bots_by_reason": reasons}
    assert got["totals"] == everything
    assert got["window"]["tz"] == "Asia/Kolkata"
    assert [(p["start"][:10], p["total"], p["unique"], p["bots"], p["after_expiry"])
            for p in got["series"]] == [
        (str(day), 0, 0, 0, 0),
        (str(day + timedelta(days=1)), 1, 1, 3, 0),  # asha at 23:59; three bots before midnight
        (str(day + timedelta(days=2)), 3, 1, 1, 2),  # bala thrice; HEAD; esha's two late taps
    ]  # fmt: skip
    assert {k: got["in_window"][k] for k in ("total", "unique")} == {"total": 4, "unique": 2}
    by_link = {i["link_id"]: i["totals"] for i in got["by_link"]}
    assert {k: by_link[links[0]][k] for k in ("total", "unique", "bots", "after_expiry")} == {
        "total": 3, "unique": 2, "bots": 4, "after_expiry": 2
    }  # fmt: skip
    assert {k: by_link[links[1]][k] for k in ("total", "unique")} == {"total": 3, "unique": 2}
    repeated = "?from=2026-10-25T00:00:00Z&to=2026-10-25T02:00:00Z&bucket=hour&tz=Europe/London"
    got = await api.call("GET", f"/v1/links/{{link_id}}/report{repeated}", auth=key,
                         link_id=links[1])  # fmt: skip
    assert [(p["start"], p["total"]) for p in got["series"]] == [
        ("2026-10-25T01:00:00+01:00", 1),
        ("2026-10-25T01:00:00+00:00", 1),
    ]

    # the CSV: the same window, one row per day and link
    headers = {"Authorization": f"Bearer {key}"}
    async with api.http.get(f"/v1/campaigns/{campaign}/report.csv{query}", headers=headers) as r:
        rows = list(csv.DictReader(io.StringIO(await r.text())))
    got_csv = {
        (row["bucket_start"][:10], int(row["link_id"])): [
            int(row[f]) for f in ("total_clicks", "unique_clicks", "bot_clicks", "after_expiry",
                                  "bots_user_agent", "bots_referrer", "bots_network", "bots_head")
        ]
        for row in rows
    }  # fmt: skip
    assert got_csv == {
        (str(day + timedelta(days=1)), links[0]): [1, 1, 3, 0, 1, 1, 1, 0],
        (str(day + timedelta(days=2)), links[0]): [2, 1, 1, 2, 0, 0, 0, 1],
        (str(day + timedelta(days=2)), links[1]): [1, 1, 0, 0, 0, 0, 0, 0],
    }

    # the lists: non-clickers are exactly the recipients minus the clickers
    clickers = await api.call("GET", "/v1/campaigns/{campaign_id}/clickers", auth=key,
                              campaign_id=campaign)  # fmt: skip
    assert sorted((c["recipient"], c["clicks"], c["bot_clicks"], c["after_expiry"])
                  for c in clickers["items"]) == [("asha", 3, 0, 0), ("bala", 3, 0, 0)]  # fmt: skip
    non = await api.call("GET", "/v1/campaigns/{campaign_id}/non-clickers", auth=key,
                         campaign_id=campaign)  # fmt: skip
    # the sender's ids, in the order of their pseudonyms
    never = sorted(["chitra", "dev", "esha"], key=pseudonym)
    assert [n["recipient"] for n in non["items"]] == never

    # the dashboard
    seen = await asyncio.to_thread(_read_dashboard, running.api, key, campaign)
    assert seen["cards"] == {
        "unique-clicks": "2", "total-clicks": "6", "bot-clicks": "4", "after-expiry": "2"
    }  # fmt: skip
    assert seen["bot_reasons"].endswith("user agent 1, referrer 1, network 1, HEAD 1")
    assert seen["freshness"].endswith(" · times in Asia/Kolkata")
    # by link: the window (7 days: London's October hour is outside it), then all time
    assert seen["by_link"] == [
        [str(links[0]), "https://shop.example.in/one", "2", "3", "4", "2", "2", "3", "4", "2"],
        [str(links[1]), "https://shop.example.in/two", "1", "1", "0", "0", "2", "3", "0", "0"],
    ]
    assert sorted(seen["clickers"]) == [["asha", "3", "0", "0"], ["bala", "3", "0", "0"]]
    assert sorted(seen["non_clickers"]) == [["chitra"], ["dev"], ["esha"]]


def _read_dashboard(base: str, key: str, campaign_id: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium() as browser:
        wait = WebDriverWait(browser, WAIT_S)
        browser.get(f"{base}/dashboard")
        wait.until(ready.visibility_of_element_located((By.ID, "api-key"))).send_keys(key)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#campaigns tbody tr")))
        browser.get(f"{base}/dashboard/campaigns/{campaign_id}")
        wait.until(ready.presence_of_element_located((By.ID, "by-link")))
        for which in ("clickers", "non-clickers"):
            wait.until(
                lambda b, w=which: b.find_element(By.ID, f"{w}-list").get_attribute("data-loaded")
            )
        seen["cards"] = {
            card: browser.find_element(By.CSS_SELECTOR, f"#{card} .value").get_attribute(
                "data-value"
            )
            for card in ("unique-clicks", "total-clicks", "bot-clicks", "after-expiry")
        }
        seen["bot_reasons"] = browser.find_element(By.CSS_SELECTOR, "#bot-clicks .sub").text
        seen["freshness"] = browser.find_element(By.ID, "freshness").text
        seen["by_link"] = [_cells(r) for r in _rows(browser, "by-link")]
        seen["clickers"] = [_cells(r, skip=(4, 5)) for r in _rows(browser, "clickers")]
        seen["non_clickers"] = [_cells(r) for r in _rows(browser, "non-clickers")]
    return seen
