"""One Postgres transaction per batch: the exactly-once heart of the counter.

In a single transaction we insert the batch's event ids (a conflict means the event was counted
before), insert (link, visitor) rows for the new human events (a row inserted is a unique click),
add the new clicks to the counters, and move the stored offsets forward. Either all of it commits
or none of it does, so a crash at any point leaves counts and offsets in agreement.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.counts import LinkCounts
from shared.events import ClickEvent


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch changed: the new absolute counts of the links it touched, and tallies."""

    counts: list[LinkCounts]
    counted: int
    duplicates: int


async def apply_batch(
    conn: asyncpg.Connection,
    *,
    group: str,
    topic: str,
    events: list[ClickEvent],
    next_offsets: dict[int, int],
) -> BatchResult:
    """Count `events` (some may be redeliveries) and store `next_offsets` (partition -> offset)."""
    async with conn.transaction():
        fresh = await _new_events(conn, events)
        counts = await _add_counts(conn, fresh) if fresh else []
        if next_offsets:
            await conn.execute(
                """
                INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
                SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS t(p, o)
                ON CONFLICT (group_id, topic, partition) DO UPDATE
                SET next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset),
                    updated_at = now()
                """,
                group,
                topic,
                list(next_offsets),
                list(next_offsets.values()),
            )
    return BatchResult(counts=counts, counted=len(fresh), duplicates=len(events) - len(fresh))


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, int]:
    """partition -> next offset to read, as committed with the counts."""
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        group,
        topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


async def _new_events(conn: asyncpg.Connection, events: list[ClickEvent]) -> list[ClickEvent]:
    by_id: dict[UUID, ClickEvent] = {}
    for e in events:
        by_id.setdefault(UUID(e.event_id), e)
    inserted = await conn.fetch(
        "INSERT INTO processed_events (event_id) SELECT unnest($1::uuid[])"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        list(by_id),
    )
    return [by_id[r["event_id"]] for r in inserted]


async def _add_counts(conn: asyncpg.Connection, fresh: list[ClickEvent]) -> list[LinkCounts]:
    humans = [e for e in fresh if not e.is_bot]
    total = Tally(e.link_id for e in humans)
    bots = Tally(e.link_id for e in fresh if e.is_bot)
    pairs = sorted({(e.link_id, e.visitor_id) for e in humans})
    unique: Tally[int] = Tally()
    if pairs:
        rows = await conn.fetch(
            "INSERT INTO link_visitors (link_id, visitor_id)"
            " SELECT * FROM unnest($1::bigint[], $2::text[])"
            " ON CONFLICT DO NOTHING RETURNING link_id",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
        unique.update(r["link_id"] for r in rows)
    links = sorted(set(total) | set(bots))  # one lock order for every writer: no deadlocks
    rows = await conn.fetch(
        """
        INSERT INTO link_counters AS c (link_id, total_clicks, unique_clicks, bot_clicks)
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
        ON CONFLICT (link_id) DO UPDATE
        SET total_clicks = c.total_clicks + EXCLUDED.total_clicks,
            unique_clicks = c.unique_clicks + EXCLUDED.unique_clicks,
            bot_clicks = c.bot_clicks + EXCLUDED.bot_clicks,
            updated_at = now()
        RETURNING link_id, total_clicks, unique_clicks, bot_clicks
        """,
        links,
        [total[i] for i in links],
        [unique[i] for i in links],
        [bots[i] for i in links],
    )
    return [
        LinkCounts(r["link_id"], r["total_clicks"], r["unique_clicks"], r["bot_clicks"])
        for r in rows
    ]
