"""The reports API on the real Kafka, counter, Postgres and Redis: exact counts by link, campaign,
family, channel, kind, hour and day (UTC and Asia/Kolkata), Redis totals agreeing with the
Postgres series, freshness (lag behind, then current), isolation and bad input."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.counter.counter import Counter
from shared.settings import Settings
from tests.helpers import wait_for
from tests.integration.api_client import ApiClient
from tests.integration.reports.world import (
    World,
    build_world,
    counted_total,
    publish,
    report,
    window,
)
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

ZERO = {"total": 0, "unique": 0, "bots": 0}


def counts(total: int, unique: int, bots: int = 0) -> dict[str, int]:
    return {"total": total, "unique": unique, "bots": bots}


async def test_a_campaign_report_has_exact_totals_series_links_channels_and_family(
    api: ApiClient, world: World, pool: asyncpg.Pool
) -> None:
    a = world.campaigns["A"]
    # sent at H-0:30 and H+1:30: their first 24 hours are [H-1, H+23) and [H+1, H+25)
    for campaign, minutes in ((a, -30), (world.campaigns["R"], 90)):
        await pool.execute(
            "UPDATE campaigns SET created_at = $2 WHERE id = $1",
            campaign,
            world.hour + timedelta(minutes=minutes),
        )
    got = await report(
        api, world, "/v1/campaigns/{campaign_id}/report", window(world), campaign_id=a
    )
    assert got["campaign"]["id"] == a and got["campaign"]["kind"] == "one_time"
    assert got["totals"] == counts(5, 3, 1)  # v1, v2, v3 are the campaign's visitors
    assert got["totals_source"] == "redis"
    assert got["in_window"] == counts(5, 4, 1)  # v1 is new on A1 and on A2
    assert got["window"] == {
        "from": world.hour.isoformat(),
        "to": (world.hour + timedelta(hours=3)).isoformat(),
        "bucket": "hour",
        "tz": "UTC",
    }
    assert [(p["start"], p["total"], p["unique"], p["bots"]) for p in got["series"]] == [
        (world.hour.isoformat(), 3, 2, 0),
        ((world.hour + timedelta(hours=1)).isoformat(), 2, 2, 1),
        ((world.hour + timedelta(hours=2)).isoformat(), 0, 0, 0),
    ]
    assert got["by_channel"] == [{"channel": "sms", **counts(5, 4, 1)}]
    assert [(i["link_id"], i["destination"]) for i in got["by_link"]] == [
        (world.links["A1"], "https://shop.example.in/diwali"),
        (world.links["A2"], "https://shop.example.in/terms"),
    ]
    assert {k: v for k, v in got["by_link"][0].items() if k in ZERO} == counts(4, 3, 1)
    assert got["by_link"][0]["totals"] == counts(4, 3, 1)
    assert got["by_link"][1]["totals"] == counts(1, 1, 0)
    family = [
        (f["campaign"]["id"], f["totals"], f["in_window"], f["first_24h"]) for f in got["family"]
    ]
    assert family == [
        (a, counts(5, 3, 1), counts(5, 4, 1), counts(5, 4, 1)),
        (world.campaigns["R"], counts(2, 2), counts(2, 2), counts(2, 2)),
    ]
    narrow = await report(
        api, world, "/v1/campaigns/{campaign_id}/report", window(world, hours=1), campaign_id=a
    )
    assert [f["in_window"] for f in narrow["family"]] == [counts(3, 2), ZERO]
    assert [f["first_24h"] for f in narrow["family"]] == [counts(5, 4, 1), counts(2, 2)]
    assert got["lag"]["status"] == "current" and got["lag"]["records"] == 0
    assert got["lag"]["last_counted_at"] is not None

    resend = await report(
        api, world, "/v1/campaigns/{campaign_id}/report", window(world),
        campaign_id=world.campaigns["R"],
    )  # fmt: skip
    assert [f["campaign"]["id"] for f in resend["family"]] == [a, world.campaigns["R"]]
    assert resend["totals"] == counts(2, 2)


async def test_live_totals_from_redis_agree_with_the_postgres_series(
    api: ApiClient, world: World, redis: aioredis.Redis
) -> None:
    everything = window(world, hours=24 * 3, bucket="day")
    for label, link_id in world.links.items():
        got = await report(api, world, "/v1/links/{link_id}/report", everything, link_id=link_id)
        assert got["totals_source"] == "redis"
        summed = {f: sum(p[f] for p in got["series"]) for f in ZERO}
        assert summed == got["totals"] == got["in_window"], label
    for name, campaign_id in world.campaigns.items():
        got = await report(
            api, world, "/v1/campaigns/{campaign_id}/report", everything, campaign_id=campaign_id
        )
        summed = {f: sum(p[f] for p in got["series"]) for f in ZERO}
        assert summed["total"] == got["totals"]["total"], name
        assert summed["bots"] == got["totals"]["bots"], name
        # per-link first visits: the series' uniques add up to the links' unique counts
        assert summed["unique"] == sum(i["totals"]["unique"] for i in got["by_link"]), name

    # Redis emptied (and not yet rebuilt): the same totals, read from Postgres
    await redis.flushdb()
    a = world.campaigns["A"]
    got = await report(api, world, "/v1/campaigns/{campaign_id}/report", campaign_id=a)
    assert got["totals_source"] == "postgres"
    assert got["totals"] == counts(5, 3, 1)


async def test_the_organisation_report_splits_by_channel_and_kind(
    api: ApiClient, world: World
) -> None:
    got = await report(api, world, "/v1/report", window(world))
    assert got["org_id"] == world.org_id
    assert got["totals"] == counts(8, 7, 2)  # unique: summed over links
    assert got["in_window"] == counts(8, 7, 2)
    assert got["by_channel"] == [
        {"channel": "sms", **counts(7, 6, 1)},
        {"channel": "whatsapp", **counts(1, 1, 1)},
    ]
    assert got["by_kind"] == [
        {"kind": "one_time", **counts(5, 4, 1)},
        {"kind": "resend", **counts(2, 2, 0)},
        {"kind": "coupon_expiry_reminder", **counts(1, 1, 1)},
    ]
    listed = [(c["campaign"]["id"], c["totals"]) for c in got["campaigns"]]
    assert listed == [
        (world.campaigns["C"], counts(1, 1, 1)),
        (world.campaigns["R"], counts(2, 2, 0)),
        (world.campaigns["A"], counts(5, 3, 1)),
    ]
    assert got["campaigns_source"] == "redis" and got["campaigns_truncated"] is False
    assert [p["total"] for p in got["series"]] == [4, 2, 2]
    assert [p["bots"] for p in got["series"]] == [1, 1, 0]


async def test_day_buckets_follow_the_named_time_zone(
    api: ApiClient,
    world: World,
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    # 18:10 and 19:10 UTC are one UTC day but two days in India: 23:40 and 00:40 (+05:30)
    link_id = await api.new_link(world.key, world.campaigns["C"], "https://shop.example.in/late")
    day = world.hour.replace(hour=0) - timedelta(days=2)
    at = [day + timedelta(hours=18, minutes=10), day + timedelta(hours=19, minutes=10)]
    await publish(
        producer,
        settings.kafka.clicks_topic,
        [
            make_event(
                occurred_at=t.isoformat().replace("+00:00", "Z"),
                link_id=link_id,
                org_id=world.org_id,
                campaign_id=world.campaigns["C"],
                campaign_kind="coupon_expiry_reminder",
                channel="whatsapp",
                visitor_id=f"v:{t.hour}",
            )
            for t in at
        ],
    )
    assert await wait_for(lambda: counted_total(pool, world.org_id), 12) == 12
    route = "/v1/links/{link_id}/report"
    days = f"?from={day.date()}&to={(day + timedelta(days=2)).date()}&bucket=day"
    utc = await report(api, world, route, days, link_id=link_id)
    assert [(p["start"], p["total"]) for p in utc["series"]] == [
        (day.isoformat(), 2),
        ((day + timedelta(days=1)).isoformat(), 0),
    ]
    india = await report(api, world, route, days + "&tz=Asia/Kolkata", link_id=link_id)
    local = [(day + timedelta(days=n)).date().isoformat() + "T00:00:00+05:30" for n in range(3)]
    assert india["window"] == {  # local days run from 00:30 to 00:30 (UTC hours)
        "from": local[0].replace("T00:00", "T00:30"),
        "to": local[2].replace("T00:00", "T00:30"),
        "bucket": "day",
        "tz": "Asia/Kolkata",
    }
    assert [(p["start"], p["total"], p["unique"]) for p in india["series"]] == [
        (local[0], 1, 1),
        (local[1], 1, 1),
    ]
    # hour buckets are UTC hours, shown in local time
    edges = (day + timedelta(hours=18), day + timedelta(hours=20))
    hours = f"?from={edges[0].isoformat()}&to={edges[1].isoformat()}".replace("+", "%2B")
    by_hour = await report(api, world, route, hours + "&tz=Asia/Kolkata", link_id=link_id)
    starts = [(p["start"], p["total"]) for p in by_hour["series"]]
    assert starts == [
        (f"{local[0][:10]}T23:30:00+05:30", 1),
        (f"{local[1][:10]}T00:30:00+05:30", 1),
    ]


async def test_another_organisation_sees_nothing(api: ApiClient, world: World) -> None:
    _, theirs = await api.new_org("Them")
    for route, ids in (
        ("/v1/campaigns/{campaign_id}/report", {"campaign_id": world.campaigns["A"]}),
        ("/v1/links/{link_id}/report", {"link_id": world.links["A1"]}),
    ):
        got = await api.call("GET", route, auth=theirs, expect=404, **ids)
        assert got["error"] == "not_found"
    own = await api.call("GET", "/v1/report" + window(world), auth=theirs)
    assert own["totals"] == ZERO and own["in_window"] == ZERO
    assert own["campaigns"] == [] and own["by_channel"] == []


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?tz=Mars/Olympus", "invalid_tz"),
        ("?bucket=week", "invalid_bucket"),
        ("?from=2026-11-20&to=2026-11-10", "invalid_range"),
        ("?from=yesterday", "invalid_range"),
        ("?from=2026-11-20T10:00:00", "invalid_range"),  # no zone
        ("?from=2020-01-01&to=2026-01-01&bucket=hour", "range_too_large"),
        ("?form=2026-11-20", "unknown_parameter"),
    ],
)
async def test_bad_windows_are_refused_with_their_reason(
    api: ApiClient, query: str, error: str
) -> None:
    _, key = await api.new_org("Acme")
    got = await api.call("GET", "/v1/report" + query, auth=key, expect=422)
    assert got["error"] == error


async def test_reports_need_an_api_key(api: ApiClient) -> None:
    for route in ("/v1/report", "/v1/report.csv", "/v1/chart.svg"):
        async with api.http.get(route) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthorized"


async def test_lag_says_how_many_clicks_are_not_counted_yet(
    api: ApiClient,
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    producer: AIOKafkaProducer,
) -> None:
    built, clicks = await build_world(api)
    await publish(producer, settings.kafka.clicks_topic, clicks)
    before = await api.call("GET", "/v1/report", auth=built.key)
    assert before["lag"] == {"status": "behind", "records": 10, "last_counted_at": None}
    assert before["totals"] == ZERO
    counter = Counter(settings)
    await counter.start()
    try:
        assert await wait_for(lambda: counted_total(pool, built.org_id), 10) == 10

        async def lag() -> Any:
            got = await api.call("GET", "/v1/report", auth=built.key)
            return got["lag"]["status"], got["lag"]["records"]

        assert await wait_for(lag, ("current", 0)) == ("current", 0)
    finally:
        await counter.stop()
