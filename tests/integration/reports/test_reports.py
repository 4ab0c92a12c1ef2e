"""The reports API on the real Kafka, counter, Postgres and Redis: exact counts by link, campaign,
family, channel, kind, hour and day (UTC, Asia/Kolkata at its midnight, Europe/London across a
DST change), one meaning of unique everywhere (distinct visitors of the scope and period), Redis
totals agreeing with the Postgres windows, freshness (lag behind, then current), isolation and
bad input."""

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


def counts(
    total: int, unique: int, bots: int = 0, after_expiry: int = 0, **reasons: int
) -> dict[str, Any]:
    """Counts as the reports give them; bots are the world's WhatsApp previews (`user_agent`)
    unless `reasons` says otherwise."""
    by_reason = {"user_agent": 0, "referrer": 0, "network": 0, "head": 0, "other": 0}
    by_reason.update(reasons or {"user_agent": bots})
    return {
        "total": total,
        "unique": unique,
        "bots": bots,
        "after_expiry": after_expiry,
        "bots_by_reason": by_reason,
    }


ZERO = counts(0, 0)
FIELDS = ("total", "unique", "bots")


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
    assert got["in_window"] == counts(5, 3, 1)  # v1 taps A1 and A2: one unique of the campaign
    assert got["window"] == {
        "from": world.hour.isoformat(),
        "to": (world.hour + timedelta(hours=3)).isoformat(),
        "bucket": "hour",
        "tz": "UTC",
    }
    assert [(p["start"], p["total"], p["unique"], p["bots"]) for p in got["series"]] == [
        (world.hour.isoformat(), 3, 2, 0),
        ((world.hour + timedelta(hours=1)).isoformat(), 2, 2, 1),  # v3, and v1 again (on A2)
        ((world.hour + timedelta(hours=2)).isoformat(), 0, 0, 0),
    ]
    assert got["by_channel"] == [{"channel": "sms", **counts(5, 3, 1)}]
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
        (a, counts(5, 3, 1), counts(5, 3, 1), counts(5, 3, 1)),
        (world.campaigns["R"], counts(2, 2), counts(2, 2), counts(2, 2)),
    ]
    narrow = await report(
        api, world, "/v1/campaigns/{campaign_id}/report", window(world, hours=1), campaign_id=a
    )
    assert [f["in_window"] for f in narrow["family"]] == [counts(3, 2), ZERO]
    assert [f["first_24h"] for f in narrow["family"]] == [counts(5, 3, 1), counts(2, 2)]
    assert got["lag"]["status"] == "current" and got["lag"]["records"] == 0
    assert got["lag"]["last_counted_at"] is not None

    resend = await report(
        api, world, "/v1/campaigns/{campaign_id}/report", window(world),
        campaign_id=world.campaigns["R"],
    )  # fmt: skip
    assert [f["campaign"]["id"] for f in resend["family"]] == [a, world.campaigns["R"]]
    assert resend["totals"] == counts(2, 2)


async def test_live_totals_from_redis_agree_with_the_postgres_windows(
    api: ApiClient, world: World, redis: aioredis.Redis
) -> None:
    everything = window(world, hours=24 * 3, bucket="day")
    for label, link_id in world.links.items():
        got = await report(api, world, "/v1/links/{link_id}/report", everything, link_id=link_id)
        assert got["totals_source"] == "redis"
        assert got["in_window"] == got["totals"], label
        for field in ("total", "bots", "after_expiry"):
            assert sum(p[field] for p in got["series"]) == got["totals"][field], label
    for name, campaign_id in world.campaigns.items():
        got = await report(
            api, world, "/v1/campaigns/{campaign_id}/report", everything, campaign_id=campaign_id
        )
        # one meaning of unique: the window holding every click has the all-time uniques
        assert got["in_window"] == got["totals"], name
        for field in ("total", "bots"):
            assert sum(p[field] for p in got["series"]) == got["totals"][field], name
            assert sum(i["totals"][field] for i in got["by_link"]) == got["totals"][field], name

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
    assert got["totals"] == counts(8, 5, 2)  # v1 ... v5: distinct visitors of the organisation
    assert got["in_window"] == counts(8, 5, 2)
    assert got["by_channel"] == [
        {"channel": "sms", **counts(7, 4, 1)},
        {"channel": "whatsapp", **counts(1, 1, 1)},
    ]
    assert got["by_kind"] == [
        {"kind": "one_time", **counts(5, 3, 1)},
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
    assert [p["unique"] for p in got["series"]] == [3, 2, 2]  # H: v1 v2 v5; H+1: v3 v1; ...
    assert [p["bots"] for p in got["series"]] == [1, 1, 0]


async def test_days_and_hours_are_exact_in_india_at_its_midnight(
    api: ApiClient,
    world: World,
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    # India is UTC+05:30: 18:30 UTC is midnight there. 18:10 and 18:29:59 are one Indian day,
    # 18:30:00 and 19:10 the next; all four are one UTC day.
    link_id = await api.new_link(world.key, world.campaigns["C"], "https://shop.example.in/late")
    day = world.hour.replace(hour=0) - timedelta(days=2)
    taps = [((18, 10, 0), "v:a"), ((18, 29, 59), "v:b"), ((18, 30, 0), "v:b"), ((19, 10, 0), "v:a")]
    await publish(
        producer,
        settings.kafka.clicks_topic,
        [
            make_event(
                occurred_at=(day + timedelta(hours=h, minutes=m, seconds=s))
                .isoformat()
                .replace("+00:00", "Z"),
                link_id=link_id,
                org_id=world.org_id,
                campaign_id=world.campaigns["C"],
                campaign_kind="coupon_expiry_reminder",
                channel="whatsapp",
                visitor_id=visitor,
            )
            for (h, m, s), visitor in taps
        ],
    )
    assert await wait_for(lambda: counted_total(pool, world.org_id), 14) == 14
    route = "/v1/links/{link_id}/report"
    days = f"?from={day.date()}&to={(day + timedelta(days=2)).date()}&bucket=day"
    utc = await report(api, world, route, days, link_id=link_id)
    assert [(p["start"], p["total"], p["unique"]) for p in utc["series"]] == [
        (day.isoformat(), 4, 2),
        ((day + timedelta(days=1)).isoformat(), 0, 0),
    ]
    india = await report(api, world, route, days + "&tz=Asia/Kolkata", link_id=link_id)
    local = [(day + timedelta(days=n)).date().isoformat() + "T00:00:00+05:30" for n in range(3)]
    assert india["window"] == {
        "from": local[0],
        "to": local[2],
        "bucket": "day",
        "tz": "Asia/Kolkata",
    }
    assert [(p["start"], p["total"], p["unique"]) for p in india["series"]] == [
        (local[0], 2, 2),
        (local[1], 2, 2),
    ]
    # hour buckets are India's hours: they start at half past in UTC
    edges = (day + timedelta(hours=18), day + timedelta(hours=20))
    hours = f"?from={edges[0].isoformat()}&to={edges[1].isoformat()}".replace("+", "%2B")
    by_hour = await report(api, world, route, hours + "&tz=Asia/Kolkata", link_id=link_id)
    assert [(p["start"], p["total"], p["unique"]) for p in by_hour["series"]] == [
        (f"{local[0][:10]}T23:00:00+05:30", 2, 2),
        (f"{local[1][:10]}T00:00:00+05:30", 2, 2),
        (f"{local[1][:10]}T01:00:00+05:30", 0, 0),
    ]
    # the organisation's time zone is the default once an operator sets it
    await pool.execute("UPDATE orgs SET time_zone = 'Asia/Kolkata' WHERE id = $1", world.org_id)
    default = await report(api, world, route, days, link_id=link_id)
    assert default["window"] == india["window"] and default["series"] == india["series"]


async def test_days_and_hours_are_exact_across_a_daylight_saving_change(
    api: ApiClient,
    world: World,
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    # London falls back on 2026-10-25 at 01:00 UTC: that day has 25 hours, 01:00 happens twice
    link_id = await api.new_link(world.key, world.campaigns["A"], "https://shop.example.in/dst")
    taps = [
        "2026-10-24T22:59:00Z",  # 24th, 23:59 BST
        "2026-10-24T23:00:00Z",  # 25th, 00:00 BST
        "2026-10-25T00:30:00Z",  # 25th, 01:30 BST
        "2026-10-25T01:30:00Z",  # 25th, 01:30 GMT: the same wall-clock hour, an hour later
        "2026-10-25T23:59:00Z",  # 25th, 23:59 GMT
        "2026-10-26T00:00:00Z",  # 26th, 00:00 GMT
    ]
    await publish(
        producer,
        settings.kafka.clicks_topic,
        [
            make_event(
                occurred_at=at,
                link_id=link_id,
                org_id=world.org_id,
                campaign_id=world.campaigns["A"],
                campaign_kind="one_time",
                channel="sms",
                visitor_id="v:late-night",
            )
            for at in taps
        ],
    )
    assert await wait_for(lambda: counted_total(pool, world.org_id), 16) == 16
    route = "/v1/links/{link_id}/report"
    query = "?from=2026-10-24&to=2026-10-27&bucket=day&tz=Europe/London"
    got = await report(api, world, route, query, link_id=link_id)
    assert [(p["start"], p["total"], p["unique"]) for p in got["series"]] == [
        ("2026-10-24T00:00:00+01:00", 1, 1),
        ("2026-10-25T00:00:00+01:00", 4, 1),
        ("2026-10-26T00:00:00+00:00", 1, 1),
    ]
    query = "?from=2026-10-25T00:00:00Z&to=2026-10-25T02:00:00Z&bucket=hour&tz=Europe/London"
    got = await report(api, world, route, query, link_id=link_id)
    assert [(p["start"], p["total"]) for p in got["series"]] == [
        ("2026-10-25T01:00:00+01:00", 1),
        ("2026-10-25T01:00:00+00:00", 1),
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


async def test_a_click_counted_after_a_report_shows_in_the_next_one(
    api: ApiClient,
    world: World,
    settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
) -> None:
    """The distinct visitors of a window are kept per API process under the sum of the window's
    counts (`insights.UniqueCache`): a new click changes the sum, so it is never served stale."""
    a = world.campaigns["A"]
    route = "/v1/campaigns/{campaign_id}/report"
    for _ in range(2):  # the second answer comes from the cache: the same
        got = await report(api, world, route, window(world), campaign_id=a)
        assert (got["in_window"]["unique"], got["series"][0]["unique"]) == (3, 2)
    late = world.hour + timedelta(minutes=40)
    await publish(
        producer,
        settings.kafka.clicks_topic,
        [
            make_event(
                occurred_at=late.isoformat().replace("+00:00", "Z"),
                link_id=world.links["A2"],
                org_id=world.org_id,
                campaign_id=a,
                campaign_kind="one_time",
                visitor_id="v:6",
            )
        ],
    )
    assert await wait_for(lambda: counted_total(pool, world.org_id), 11) == 11
    got = await report(api, world, route, window(world), campaign_id=a)
    assert (got["in_window"]["unique"], got["series"][0]["unique"]) == (4, 3)
    org = await report(api, world, "/v1/report", window(world))
    assert org["totals"]["unique"] == 6
