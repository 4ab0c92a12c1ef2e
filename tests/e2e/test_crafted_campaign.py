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
from tests.integration.api_client import OPERATOR_TOKEN
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

    # a resend to the non-clickers, made with the dashboard's action: each keeps their code
    await api.call("PUT", "/v1/orgs/{org_id}/whitelist-check", auth=OPERATOR_TOKEN,
                   json={"enabled": False}, org_id=org_id)  # fmt: skip
    made = await asyncio.to_thread(_resend_in_dashboard, running.api, key, campaign)
    assert made["audience"] == "3"
    resend = int(made["campaign_id"])
    messages = await api.call("GET", "/v1/campaigns/{campaign_id}/messages", auth=key,
                              campaign_id=resend)  # fmt: skip
    assert [(m["recipient"], m["text"].split("/")[-1]) for m in messages["items"]] == [
        (who, f"{codes[(links[0], who)]} -CRAFT") for who in never
    ]
    # since: chitra taps twice, dev (who had only previewed) once, esha's phone previews
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    after = [
        tap(0, "chitra", now), tap(0, "chitra", now + minute), tap(0, "dev", now + 2 * minute),
        tap(0, "esha", now + 3 * minute, is_bot=True, bot_reason="ua:WhatsApp"),
    ]  # fmt: skip
    await publish(producer, settings.kafka.clicks_topic, after)
    everyone = len(clicks) + len(after)
    assert await wait_for(lambda: pool.fetchval(counted), everyone) == everyone
    got = await api.call("GET", "/v1/campaigns/{campaign_id}/report", auth=key,
                         campaign_id=resend)  # fmt: skip
    own = {"parent_id": campaign, "link_id": None, "audience": 3, "clicked": 2, "total": 3,
           "bots": 1, "after_expiry": 0}  # fmt: skip
    assert got["resend"] == own

    async def original() -> Any:
        return await api.call("GET", "/v1/campaigns/{campaign_id}/report", auth=key,
                              campaign_id=campaign)  # fmt: skip

    async def original_totals() -> Any:
        return (await original())["totals"]

    # the reused codes count on the original's links too: 3 more clicks, 2 more visitors, a bot
    everything = {"total": 9, "unique": 4, "bots": 5, "after_expiry": 2,
                  "bots_by_reason": {**reasons, "user_agent": 2}}  # fmt: skip
    assert await wait_for(original_totals, everything) == everything
    got = await original()
    assert [f["resend"] for f in got["family"]] == [None, own]
    async with api.http.get(f"/v1/campaigns/{resend}/clickers.csv", headers=headers) as r:
        rows = [[row[0], *row[2:5]] for row in csv.reader(io.StringIO(await r.text()))]
    assert rows[0] == ["recipient", "clicks", "bot_clicks", "after_expiry"]
    assert sorted(rows[1:]) == [["chitra", "2", "0", "0"], ["dev", "1", "0", "0"]]
    seen = await asyncio.to_thread(_read_resend, running.api, key, campaign, resend)
    assert seen["about"].endswith(
        "resent to 3 recipients who had not clicked: 2 clicked since (3 clicks, counted on the"
        " original's links)"
    )
    assert sorted(seen["clickers"]) == [["chitra", "2", "0", "0"], ["dev", "1", "0", "0"]]
    assert seen["non_clickers"] == [["esha"]]
    assert seen["resends"] == [["Crafted, again", "non-clickers", "3", "2", "3", "1", "0"]]
    assert seen["freshness"].endswith(" · times in Asia/Kolkata")


def _sign_in(browser: Any, base: str, key: str) -> Any:
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{base}/dashboard")
    wait.until(ready.visibility_of_element_located((By.ID, "api-key"))).send_keys(key)
    browser.find_element(By.ID, "sign-in").click()
    wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#campaigns tbody tr")))
    return wait


def _campaign_page(browser: Any, base: str, key: str, campaign_id: int) -> Any:
    """Sign in and open a campaign's page, until its lists of clickers and non-clickers have
    their first page; the wait."""
    wait = _sign_in(browser, base, key)
    browser.get(f"{base}/dashboard/campaigns/{campaign_id}")
    wait.until(ready.presence_of_element_located((By.ID, "by-link")))
    for which in ("clickers", "non-clickers"):
        wait.until(
            lambda b, w=which: b.find_element(By.ID, f"{w}-list").get_attribute("data-loaded")
        )
    return wait


def _resend_in_dashboard(base: str, key: str, campaign_id: int) -> dict[str, Any]:
    """Resend the campaign to its non-clickers with the dashboard's form."""
    with chromium() as browser:
        wait = _sign_in(browser, base, key)
        browser.get(f"{base}/dashboard/campaigns/{campaign_id}")
        wait.until(ready.presence_of_element_located((By.ID, "resend-form")))
        name = browser.find_element(By.ID, "resend-name")
        name.clear()
        name.send_keys("Crafted, again")
        browser.find_element(By.ID, "resend-template").send_keys("Last chance: {#var#} -CRAFT")
        browser.find_element(By.ID, "resend-values").send_keys("https://shop.example.in/one")
        browser.find_element(By.ID, "resend-submit").click()
        made = wait.until(ready.presence_of_element_located((By.ID, "resend-made")))
        result = browser.find_element(By.ID, "resend-result")
        return {
            "audience": result.get_attribute("data-audience"),
            "campaign_id": result.get_attribute("data-campaign-id"),
            "link": made.get_attribute("href"),
        }


def _read_resend(base: str, key: str, campaign_id: int, resend_id: int) -> dict[str, Any]:
    """The resend's page (its numbers, its lists) and the original's table of resends."""
    seen: dict[str, Any] = {}
    with chromium() as browser:
        wait = _campaign_page(browser, base, key, resend_id)
        seen["about"] = browser.find_element(By.ID, "campaign-about").text
        seen["clickers"] = [_cells(r, skip=(4, 5)) for r in _rows(browser, "clickers")]
        seen["non_clickers"] = [_cells(r) for r in _rows(browser, "non-clickers")]
        seen["freshness"] = browser.find_element(By.ID, "freshness").text
        browser.get(f"{base}/dashboard/campaigns/{campaign_id}")
        wait.until(ready.presence_of_element_located((By.ID, "resends")))
        seen["resends"] = [_cells(r) for r in _rows(browser, "resends")]
    return seen


def _read_dashboard(base: str, key: str, campaign_id: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium() as browser:
        _campaign_page(browser, base, key, campaign_id)
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
