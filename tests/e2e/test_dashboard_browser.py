"""The dashboard in a real browser (Debian's headless Chromium) against the running pipeline: a
campaign is created through the API, its links are tapped through the redirector, the counter
counts them, and the numbers the dashboard shows are the counts. A screenshot is kept in
`test-artifacts/`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from services.api.app import create_app as create_api
from services.counter.counter import Counter
from services.redirector.app import Redirector
from shared.counts import CountStore
from shared.settings import Secret, Settings
from tests.e2e.browser import ARTIFACTS, chromium, require_chromium
from tests.helpers import wait_for
from tests.integration.api_client import OPERATOR_TOKEN, ApiClient

pytestmark = pytest.mark.integration

CAMPAIGN = "Diwali <b>sale</b> & more"  # markup in a name must show as text
PAGES = ("https://shop.example.in/diwali", "https://shop.example.in/terms")
WAIT_S = 30


@dataclass(frozen=True)
class Running:
    api: str
    redirector: str
    client: ApiClient


@pytest.fixture
async def running(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> AsyncIterator[Running]:
    """The redirector, the counter and the API, listening on 127.0.0.1."""
    require_chromium()
    settings = settings.changed(OPERATOR_TOKEN=Secret(OPERATOR_TOKEN))
    redirector = Redirector(settings)
    api = TestServer(create_api(settings), host="127.0.0.1")
    await redirector.start("127.0.0.1", 0)
    await api.start_server()
    counter = Counter(settings)
    await counter.start()
    try:
        base = str(api.make_url("")).rstrip("/")
        async with aiohttp.ClientSession(base_url=base) as http:
            yield Running(base, redirector.url, ApiClient(http))
    finally:
        await counter.stop()
        await api.close()
        await redirector.stop()


async def test_the_dashboard_shows_the_counted_clicks_and_draws_the_chart(
    running: Running, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    api = running.client
    _, key = await api.new_org("Acme Retail", tracking=True)
    created = await api.call(
        "POST", "/v1/campaigns", auth=key, json={"name": CAMPAIGN, "kind": "one_time"}, expect=201
    )
    campaign_id = created["id"]
    codes: list[dict[str, str]] = []
    link_ids = []
    sent = (["+91981", "+91982", "+91983", "+91984"], ["+91981"])
    for page, recipients in zip(PAGES, sent, strict=True):
        link_ids.append(await api.new_link(key, campaign_id, page))
        minted = await api.call(
            "POST",
            "/v1/links/{link_id}/recipients",
            auth=key,
            json={"recipients": recipients},
            link_id=link_ids[-1],
        )
        codes.append({c["recipient"]: c["code"] for c in minted["codes"]})

    # taps: +91981 twice on the first link and once on the second, +91982 and +91983 once;
    # a link preview (HEAD) of +91982's link is a bot
    taps = [
        ("GET", codes[0]["+91981"]),
        ("GET", codes[0]["+91981"]),
        ("GET", codes[0]["+91982"]),
        ("GET", codes[0]["+91983"]),
        ("GET", codes[1]["+91981"]),
        ("HEAD", codes[0]["+91982"]),
    ]
    async with aiohttp.ClientSession(headers={"User-Agent": "Phone/1.0"}) as phone:
        for method, code in taps:
            async with phone.request(
                method, f"{running.redirector}/{code}", allow_redirects=False
            ) as resp:
                assert resp.status == 302
                assert resp.headers["Location"] in PAGES

    async def counted() -> tuple[int, int, int]:
        got = await CountStore(redis).get_counts("campaign", campaign_id)
        return (got.total, got.unique, got.bots) if got else (0, 0, 0)

    assert await wait_for(counted, (5, 3, 1)) == (5, 3, 1)
    row = await pool.fetchrow(
        "SELECT total_clicks, unique_clicks, bot_clicks FROM campaign_counters"
        " WHERE campaign_id = $1",
        campaign_id,
    )
    assert tuple(row) == (5, 3, 1)

    seen = await asyncio.to_thread(_drive, running.api, key, campaign_id)

    # one meaning of unique: +91981, +91982, +91983 are the campaign's 3, on the cards, in the
    # list, by channel and in the chart; the first link's 3 and the second's 1 are theirs
    assert seen["list_row"] == [CAMPAIGN, "one time", "sms", "3", "5", "1", "0"]
    assert seen["cards"] == {
        "unique-clicks": "3", "total-clicks": "5", "bot-clicks": "1", "after-expiry": "0"
    }  # fmt: skip
    assert seen["heading"] == CAMPAIGN
    assert seen["polylines"] == {"total": "5", "unique": "3", "bots": "1"}
    assert seen["points"] == 8  # a week of days, the first one cut by the window
    assert seen["chart_size"][0] > 700 and seen["chart_size"][1] > 250
    assert seen["by_link"] == [
        [str(link_ids[0]), PAGES[0], "3", "4", "1", "0", "3", "4", "1", "0"],
        [str(link_ids[1]), PAGES[1], "1", "1", "0", "0", "1", "1", "0", "0"],
    ]
    assert seen["by_channel"] == [["sms", "3", "5", "1", "0"]]
    assert seen["freshness"].startswith("As of ")
    assert "counter up to date (0 clicks waiting)" in seen["freshness"]
    assert seen["freshness"].endswith(" · times in UTC")
    # who clicked (the columns of first and last click are times, left out), who did not: the
    # sender's numbers, in the order of their pseudonyms
    assert sorted(seen["clickers"]) == [["+91981", "3", "0", "0"], ["+91982", "1", "1", "0"],
                                ["+91983", "1", "0", "0"]]  # fmt: skip
    assert seen["non_clickers"] == [["+91984"]]  # minted a code, never tapped it
    assert seen["csv_buttons"] == [
        "by-channel-csv", "by-link-csv", "clickers-csv", "family-csv", "non-clickers-csv",
        "report-csv",
    ]  # fmt: skip
    assert seen["wrong_key_error"] == (
        "That API key was not accepted: the credential is not a valid API key (unknown or revoked)"
    )
    assert seen["wrong_key_kept"] is None
    assert seen["stored_key"] == key
    assert key not in seen["urls"]
    assert seen["signed_out_key"] is None
    for shot in ("dashboard-campaigns.png", "dashboard-campaign.png"):
        assert (ARTIFACTS / shot).stat().st_size > 10_000


def _drive(base: str, key: str, campaign_id: int) -> dict[str, Any]:
    """Sign in, read the campaign list, open the campaign, read it, screenshot, sign out."""
    seen: dict[str, Any] = {"urls": ""}
    with chromium() as browser:
        wait = WebDriverWait(browser, WAIT_S)
        browser.get(f"{base}/dashboard")
        field = wait.until(ready.visibility_of_element_located((By.ID, "api-key")))
        field.send_keys("ctk_" + "x" * 40)  # a wrong key first
        browser.find_element(By.ID, "sign-in").click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "login-error"), "not accepted"))
        seen["wrong_key_error"] = browser.find_element(By.ID, "login-error").text
        seen["wrong_key_kept"] = browser.execute_script(
            "return sessionStorage.getItem('clicktrack.apiKey')"
        )
        browser.find_element(By.ID, "api-key").send_keys(key)
        browser.find_element(By.ID, "sign-in").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#campaigns tbody tr")))
        seen["urls"] += browser.current_url
        first = browser.find_element(By.CSS_SELECTOR, "#campaigns tbody tr")
        seen["list_row"] = _cells(first, skip=(3,))  # column 3 is the creation time
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#chart svg polyline")))
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-campaigns.png"))
        first.find_element(By.TAG_NAME, "a").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#chart svg polyline")))
        wait.until(ready.presence_of_element_located((By.ID, "by-link")))
        seen["urls"] += browser.current_url
        seen["heading"] = browser.find_element(By.ID, "campaign-name").text
        seen["cards"] = {
            card: browser.find_element(By.CSS_SELECTOR, f"#{card} .value").get_attribute(
                "data-value"
            )
            for card in ("unique-clicks", "total-clicks", "bot-clicks", "after-expiry")
        }
        seen["polylines"] = {
            field: browser.find_element(
                By.CSS_SELECTOR, f"#chart svg polyline.series-{field}"
            ).get_attribute("data-sum")
            for field in ("total", "unique", "bots")
        }
        line = browser.find_element(By.CSS_SELECTOR, "#chart svg polyline.series-total")
        seen["points"] = len((line.get_attribute("points") or "").split())
        svg = browser.find_element(By.CSS_SELECTOR, "#chart svg")
        seen["chart_size"] = (svg.size["width"], svg.size["height"])
        seen["by_link"] = [_cells(r) for r in _rows(browser, "by-link")]
        seen["by_channel"] = [_cells(r) for r in _rows(browser, "by-channel")]
        seen["freshness"] = browser.find_element(By.ID, "freshness").text
        for which in ("clickers", "non-clickers"):
            wait.until(
                lambda b, w=which: b.find_element(By.ID, f"{w}-list").get_attribute("data-loaded")
            )
        seen["clickers"] = [_cells(r, skip=(4, 5)) for r in _rows(browser, "clickers")]
        seen["non_clickers"] = [_cells(r) for r in _rows(browser, "non-clickers")]
        seen["csv_buttons"] = sorted(
            b.get_attribute("id") for b in browser.find_elements(By.CSS_SELECTOR, "button.csv")
        )
        seen["stored_key"] = browser.execute_script(
            "return sessionStorage.getItem('clicktrack.apiKey')"
        )
        browser.save_screenshot(str(ARTIFACTS / "dashboard-campaign.png"))
        browser.find_element(By.ID, "logout").click()
        wait.until(ready.visibility_of_element_located((By.ID, "api-key")))
        seen["urls"] += browser.current_url
        seen["signed_out_key"] = browser.execute_script(
            "return sessionStorage.getItem('clicktrack.apiKey')"
        )
    return seen


def _rows(browser: WebDriver, table: str) -> list[Any]:
    return list(browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"))


def _cells(row: Any, skip: tuple[int, ...] = ()) -> list[str]:
    cells = row.find_elements(By.TAG_NAME, "td")
    return [c.text for i, c in enumerate(cells) if i not in skip]
