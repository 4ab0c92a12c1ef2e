"""CSV export (exact bytes, streamed, freshness headers), the SVG charts, and the dashboard's
files and headers, against the counted world of `world.py`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.integration.api_client import ApiClient
from tests.integration.reports.world import World, window

pytestmark = pytest.mark.integration


def auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.key}"}


async def test_a_campaign_exports_as_csv_row_by_bucket_link_and_channel(
    api: ApiClient, world: World
) -> None:
    a, (a1, a2) = world.campaigns["A"], (world.links["A1"], world.links["A2"])
    h0, h1 = world.hour.isoformat(), (world.hour + timedelta(hours=1)).isoformat()
    route = f"/v1/campaigns/{a}/report.csv{window(world)}"
    async with api.http.get(route, headers=auth(world)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert resp.headers["Transfer-Encoding"] == "chunked"  # streamed, not built whole
        assert resp.headers["Content-Disposition"] == (
            f'attachment; filename="clicktrack-campaign-{a}.csv"'
        )
        assert resp.headers["X-Clicktrack-Lag"] == "current"
        assert resp.headers["X-Clicktrack-Lag-Records"] == "0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", resp.headers["X-Clicktrack-As-Of"])
        body = await resp.read()
    assert body.decode() == (
        "bucket_start,campaign_id,campaign_kind,link_id,channel,total_clicks,unique_clicks,"
        "bot_clicks,after_expiry,bots_user_agent,bots_referrer,bots_network,bots_head,"
        "bots_other\r\n"
        f"{h0},{a},one_time,{a1},sms,3,2,0,0,0,0,0,0,0\r\n"
        f"{h1},{a},one_time,{a1},sms,1,1,1,0,1,0,0,0,0\r\n"
        f"{h1},{a},one_time,{a2},sms,1,1,0,0,0,0,0,0,0\r\n"
    )


async def test_the_organisation_exports_by_day_in_its_time_zone(
    api: ApiClient, world: World
) -> None:
    route = "/v1/report.csv" + window(world, 24, bucket="day", tz="Asia/Kolkata")
    async with api.http.get(route, headers=auth(world)) as resp:
        assert resp.status == 200
        lines = (await resp.text()).splitlines()
    assert resp.headers["X-Clicktrack-Window"].endswith(";bucket=day;tz=Asia/Kolkata")
    india = ZoneInfo("Asia/Kolkata")
    # computed the plain way from the events: per Indian day (of each click's own time) and link,
    # human clicks, distinct visitors, bots
    expected: dict[tuple[str, int], list[Any]] = {}
    for event in world.events:
        at = datetime.fromisoformat(event.occurred_at).astimezone(india)
        day = at.replace(hour=0, minute=0, second=0, microsecond=0).isoformat()
        sums = expected.setdefault((day, event.link_id), [0, set(), 0])
        if event.is_bot:
            sums[2] += 1
        else:
            sums[0] += 1
            sums[1].add(event.visitor_id)
    rows = [line.split(",") for line in lines[1:]]
    got = {(r[0], int(r[3])): [int(v) for v in r[5:8]] for r in rows}
    assert got == {k: [v[0], len(v[1]), v[2]] for k, v in expected.items()}
    assert len(lines) == 1 + len(expected)


async def test_the_csv_of_another_organisations_link_is_not_found(
    api: ApiClient, world: World
) -> None:
    _, theirs = await api.new_org("Them")
    route = f"/v1/links/{world.links['A1']}/report.csv"
    async with api.http.get(route, headers={"Authorization": f"Bearer {theirs}"}) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"
    async with api.http.get(route + "?bucket=minute", headers=auth(world)) as resp:
        assert resp.status == 422
        assert (await resp.json())["error"] == "invalid_bucket"


async def test_the_chart_draws_every_bucket_of_the_series(api: ApiClient, world: World) -> None:
    a = world.campaigns["A"]
    route = f"/v1/campaigns/{a}/chart.svg{window(world)}"
    async with api.http.get(route, headers=auth(world)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/svg+xml; charset=utf-8"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        svg = await resp.text()
    assert 'data-buckets="3"' in svg and 'data-max="5"' in svg
    for field, total in (("total", 5), ("unique", 4), ("bots", 1)):
        found = re.search(rf'class="series-{field}" data-sum="(\d+)"[^>]* points="([^"]+)"', svg)
        assert found is not None, field
        assert int(found[1]) == total
        assert len(found[2].split()) == 3
    assert "<script" not in svg


async def test_the_dashboard_is_served_whole_from_here_with_a_strict_policy(
    api: ApiClient,
) -> None:
    for path, kind in (
        ("/dashboard", "text/html"),
        ("/dashboard/campaigns/12", "text/html"),
        ("/dashboard/static/dashboard.js", "text/javascript"),
        ("/dashboard/static/dashboard.css", "text/css"),
    ):
        async with api.http.get(path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == f"{kind}; charset=utf-8"
            policy = resp.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert resp.headers["X-Frame-Options"] == "DENY"
            text = await resp.text()
            assert "http://" not in text and "https://" not in text.replace(
                "http://www.w3.org", ""
            )  # nothing fetched from elsewhere
    for missing in ("/dashboard/static/../app.py", "/dashboard/static/secret.txt"):
        async with api.http.get(missing) as resp:
            assert resp.status == 404, missing
