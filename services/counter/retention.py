"""Daily partitions of the deduplication tables: created ahead, dropped after the retention window.

`processed_events` (event ids) and `daily_visitors` (who was seen on which day) grow with every
click. Both are partitioned by UTC day; a day's partition is created before its clicks arrive
(today, and two days ahead) or on demand for a late or early event, and dropped as a whole once
the day is older than `CounterSettings.dedup_retention_days`. Dropping a partition is instant and
leaves no dead rows behind, where a row-wise DELETE would scan, bloat and need vacuuming.

An event that arrives for a day already dropped gets that day's partition back, and it is dropped
again at the next pruning; a redelivery can only miss its id if it arrives after the window, which
is longer than the topic keeps records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

import asyncpg

TABLES = ("processed_events", "daily_visitors")
DAYS_AHEAD = 2
"""Partitions created ahead of today, days."""
_LOCK = 0x0C11C8  # pg_advisory_xact_lock key: one process creates or drops partitions at a time
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def partition_name(table: str, day: date) -> str:
    """`processed_events_p20261126`."""
    return f"{table}_p{day:%Y%m%d}"


async def partitions(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, list[date]]:
    """table -> the days it has partitions for, in order (current schema)."""
    rows = await conn.fetch(
        """
        SELECT child.relname AS name
        FROM pg_inherits
        JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
        WHERE parent.relname = ANY($1::text[])
          AND parent.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        """,
        list(TABLES),
    )
    found: dict[str, list[date]] = {t: [] for t in TABLES}
    for row in rows:
        match = _NAME.match(row["name"])
        if match and match["table"] in found:
            d = match["day"]
            found[match["table"]].append(date(int(d[:4]), int(d[4:6]), int(d[6:])))
    return {t: sorted(days) for t, days in found.items()}


async def ensure_partitions(conn: asyncpg.Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions of `days` that are missing, in both tables; returns the names made."""
    wanted = sorted(set(days))
    if not wanted:
        return []
    created: list[str] = []
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        have = await partitions(conn)
        for table in TABLES:
            for day in wanted:
                if day in have[table]:
                    continue
                name = partition_name(table, day)
                # Dates come from `date` objects, so the literals below are safe to inline.
                start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
                await conn.execute(
                    f'CREATE TABLE "{name}" PARTITION OF "{table}"'
                    f" FOR VALUES FROM ('{start}') TO ('{end}')"
                )
                created.append(name)
    return created


async def prune(conn: asyncpg.Connection, *, keep_days: int, today: date) -> list[str]:
    """Drop the partitions of days before `today - keep_days`; returns the names dropped."""
    cutoff = today - timedelta(days=keep_days)
    dropped: list[str] = []
    async with conn.transaction():
        # DROP waits for the batches using the table; never hold up counting for long.
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        for table, days in (await partitions(conn)).items():
            for day in days:
                if day < cutoff:
                    name = partition_name(table, day)
                    await conn.execute(f'DROP TABLE "{name}"')
                    dropped.append(name)
    return dropped


async def maintain(conn: asyncpg.Connection, *, keep_days: int, today: date) -> list[str]:
    """The scheduled task: partitions from yesterday to `DAYS_AHEAD` days ahead, old ones dropped.

    Returns the names created and dropped.
    """
    days = [today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)]
    created = await ensure_partitions(conn, days)
    return created + await prune(conn, keep_days=keep_days, today=today)
