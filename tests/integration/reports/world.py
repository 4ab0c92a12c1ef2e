"""A small world of campaigns and clicks for the reports tests, counted by the real counter.

Organisation "Acme" has:
  campaign A (one_time, sms) with links A1 and A2, its resend R (links R1), and
  campaign C (coupon_expiry_reminder, whatsapp) with link C1.
Clicks (H = a whole UTC hour about a day ago; v* are visitors):
  A1: H+0:05 v1, H+0:10 v1, H+0:20 v2, H+1:05 v3, H+1:06 a bot
  A2: H+1:30 v1            R1: H+2:00 v1, H+2:10 v4            C1: H+0:30 v5, H+0:31 a bot
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from shared import events
from tests.integration.api_client import ApiClient
from tests.unit.test_events import make_event


@dataclass(frozen=True)
class World:
    key: str
    org_id: int
    hour: datetime
    """H: the UTC hour the first clicks fall in."""
    campaigns: dict[str, int]
    links: dict[str, int]
    clicks: int
    """Events published (humans and bots)."""
    events: tuple[events.ClickEvent, ...] = ()
    """The events published."""


async def build_world(api: ApiClient, name: str = "Acme") -> tuple[World, list[events.ClickEvent]]:
    """Create the organisation, campaigns and links through the API; returns the world and its
    click events (not yet published)."""
    org_id, key = await api.new_org(name, tracking=True)
    a = await api.new_campaign(key)
    r = await api.new_campaign(key, "resend", parent_id=a)
    c = await api.new_campaign(key, "coupon_expiry_reminder", channel="whatsapp")
    links = {}
    for label, campaign, dest in (
        ("A1", a, "https://shop.example.in/diwali"),
        ("A2", a, "https://shop.example.in/terms"),
        ("R1", r, "https://shop.example.in/last-chance"),
        ("C1", c, "https://shop.example.in/coupon"),
    ):
        links[label] = await api.new_link(key, campaign, dest)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=26)
    where = {
        "A1": (a, "one_time", "sms"),
        "A2": (a, "one_time", "sms"),
        "R1": (r, "resend", "sms"),
        "C1": (c, "coupon_expiry_reminder", "whatsapp"),
    }

    def click(label: str, minutes: int, visitor: str, bot: bool = False) -> events.ClickEvent:
        campaign, kind, channel = where[label]
        at = hour + timedelta(minutes=minutes)
        return make_event(
            occurred_at=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            link_id=links[label],
            org_id=org_id,
            campaign_id=campaign,
            campaign_kind=kind,
            channel=channel,
            visitor_id=visitor,
            is_bot=bot,
            bot_reason="ua:WhatsApp" if bot else None,
        )

    clicks = [
        click("A1", 5, "v:1"),
        click("A1", 10, "v:1"),
        click("A1", 20, "v:2"),
        click("A1", 65, "v:3"),
        click("A1", 66, "v:bot", bot=True),
        click("A2", 90, "v:1"),
        click("R1", 120, "v:1"),
        click("R1", 130, "v:4"),
        click("C1", 30, "v:5"),
        click("C1", 31, "v:bot", bot=True),
    ]
    world = World(key, org_id, hour, {"A": a, "R": r, "C": c}, links, len(clicks), tuple(clicks))
    return world, clicks


async def publish(producer: AIOKafkaProducer, topic: str, clicks: list[events.ClickEvent]) -> None:
    """Publish `clicks` keyed by code, as the redirector does."""
    for event in clicks:
        await producer.send_and_wait(topic, value=events.encode(event), key=event.code.encode())


async def counted_total(pool: asyncpg.Pool, org_id: int) -> int:
    value: int = await pool.fetchval(
        "SELECT coalesce(sum(total_clicks + bot_clicks), 0) FROM link_counters WHERE org_id = $1",
        org_id,
    )
    return value


def window(world: World, hours: int = 3, **extra: str) -> str:
    start = world.hour.isoformat().replace("+00:00", "Z")
    end = (world.hour + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")
    query = f"?from={start}&to={end}"
    return query + "".join(f"&{k}={v}" for k, v in extra.items())


async def report(api: ApiClient, world: World, route: str, query: str = "", **ids: int) -> Any:
    return await api.call("GET", route + query, auth=world.key, **ids)
