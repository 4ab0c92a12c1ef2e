"""The counter's offsets in Postgres (`consumer_offsets`): stored with the counts, in the same
transaction (`store.COUNT_BATCH` embeds `upsert`) or after all shares of a batch committed
(`store`), and read back to know where each partition resumes (`resume_points`).

Each row keeps two offsets: `next_offset`, the first not yet counted, and `replay_from`, the
first of the last batch stored, which is read again after assignment or a crash so that its
Redis write happens again. Offsets only move forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where to read a partition from after assignment or a crash."""

    replay_from: int
    """First offset of the last batch stored: re-read so that its Redis write happens again."""
    next_offset: int
    """First offset not yet counted."""


def upsert(first: int) -> str:
    """The upsert that moves stored offsets forward; its five parameters (group, topic, then
    partitions, next offsets and first offsets as arrays) are numbered from `first`."""
    g, t, p, o, f = (f"${first + i}" for i in range(5))
    return f"""
    INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, replay_from)
    SELECT {g}, {t}, p, o, f FROM unnest({p}::int[], {o}::bigint[], {f}::bigint[]) AS t(p, o, f)
    ORDER BY p
    ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET replay_from = CASE
            WHEN EXCLUDED.next_offset > consumer_offsets.next_offset
            THEN EXCLUDED.replay_from ELSE consumer_offsets.replay_from END,
        next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset),
        updated_at = now()
"""


def columns(offsets: dict[int, tuple[int, int]]) -> tuple[list[int], ...]:
    """(partitions, next offsets, first offsets) of `offsets`, in partition order."""
    parts = sorted(offsets)
    return parts, [offsets[p][1] for p in parts], [offsets[p][0] for p in parts]


_STORE = upsert(1)
"""The offsets step of `store.COUNT_BATCH` on its own, for a batch counted in several statements."""


async def store(
    conn: asyncpg.Connection, *, group: str, topic: str, offsets: dict[int, tuple[int, int]]
) -> None:
    """Move the stored offsets forward (partition -> (first offset of the batch, next))."""
    await conn.execute(_STORE, group, topic, *columns(offsets))


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, int]:
    """partition -> next offset to read, as committed with the counts."""
    return {p: r.next_offset for p, r in (await resume_points(conn, group, topic)).items()}


async def resume_points(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, ResumePoint]:
    """partition -> where to resume reading it, as committed with the counts."""
    rows = await conn.fetch(
        "SELECT partition, next_offset, coalesce(replay_from, next_offset) AS replay_from"
        " FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        group,
        topic,
    )
    return {r["partition"]: ResumePoint(r["replay_from"], r["next_offset"]) for r in rows}
