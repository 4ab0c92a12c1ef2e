"""A numbered click workload for the fault tests and the counter benchmark, and a fast producer.

Every click carries its number in its event id (`click_id`), like the sequence numbers of
Flink's exactly-once sink tests, so a validator can name the clicks missing or counted twice.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import AIOKafkaProducer

from shared import events
from shared.settings import Settings


def click_id(run: int, n: int) -> str:
    """The event id of click `n` of a run: its number is readable in the last group."""
    return str(uuid.UUID(f"{run:08x}-0000-7000-8000-{n:012x}"))


def click_number(event_id: uuid.UUID | str) -> int:
    return int(str(event_id).rsplit("-", 1)[1], 16)


@dataclass
class Workload:
    """Numbered clicks (`clicks[n]` is click n) and the records to publish (with duplicates)."""

    clicks: list[events.ClickEvent]
    records: list[tuple[bytes, bytes]]  # (key, value) in publish order
    poison: int = 0

    @property
    def duplicates(self) -> int:
        return len(self.records) - len(self.clicks) - self.poison


def make_workload(
    n: int,
    *,
    links: int = 40,
    campaigns: int = 8,
    visitors: int = 5_000,
    bot_share: float = 0.05,
    duplicate_share: float = 0.05,
    days: float = 3.0,
    poison: int = 0,
    seed: int = 5,
) -> Workload:
    """`n` distinct clicks over `links` links (in `campaigns` campaigns, one link in ten without a
    campaign), spread over the last `days` UTC days and two channels, with `duplicate_share` of
    them published a second time later on, and `poison` unreadable records (`poison_value`)
    among them."""
    rng = random.Random(seed)
    run = rng.randrange(1, 2**32)
    now = datetime.now(UTC).replace(microsecond=0)
    clicks = []
    for i in range(n):
        link = rng.randrange(1, links + 1)
        campaign = None if link % 10 == 0 else 1000 + link % campaigns
        bot = rng.random() < bot_share
        at = now - timedelta(seconds=rng.randrange(0, max(1, int(days * 86400))))
        clicks.append(
            events.ClickEvent(
                event_id=click_id(run, i),
                occurred_at=at.isoformat().replace("+00:00", "Z"),
                code=f"C{link:04d}x{i % 7}",
                link_id=link,
                org_id=500 + link % 3,
                campaign_id=campaign,
                campaign_kind="one_time" if campaign else None,
                # a campaign's channel, as the redirector takes it from the campaign
                channel="whatsapp" if campaign and campaign % 4 == 0 else "sms",
                recipient_id=None,
                visitor_id=f"v:{rng.randrange(visitors)}" if not bot else f"bot:{i}",
                user_agent="WhatsApp/2.0" if bot else "Mozilla/5.0",
                ip="203.0.113.0",
                referer=None,
                is_bot=bot,
                bot_reason="ua:WhatsApp" if bot else None,
            )
        )
    records = [(c.code.encode(), events.encode(c)) for c in clicks]
    for i in rng.sample(range(n), int(n * duplicate_share)):
        # a redelivery: the same bytes again, later on (producer retry, spool replay)
        records.insert(rng.randrange(i + 1, len(records) + 1), records[i])
    for k in range(poison):
        records.insert(rng.randrange(len(records) + 1), (b"poison", poison_value(k, clicks[0])))
    return Workload(clicks, records, poison)


def poison_value(k: int, sample: events.ClickEvent) -> bytes:
    """The `k`th poison record, unique bytes: not JSON, a wrong type, a missing field, or huge."""
    good = orjson.loads(events.encode(sample))
    kind = k % 4
    if kind == 0:
        return f"not json #{k}".encode()
    if kind == 1:
        return orjson.dumps({**good, "link_id": str(k)})
    if kind == 2:
        return orjson.dumps({name: v for name, v in good.items() if name != "event_id"} | {"n": k})
    return orjson.dumps({**good, "n": k, "padding": "x" * 70_000})


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    """Publish `records` in order, fast: batched, acks from all replicas, awaited in windows."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        window: list[asyncio.Future[object]] = []
        for key, value in records:
            window.append(await producer.send(settings.kafka.clicks_topic, value=value, key=key))
            if len(window) >= 5_000:
                await asyncio.gather(*window)
                window = []
        await asyncio.gather(*window)
    finally:
        await producer.stop()
