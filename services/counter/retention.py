"""Partitions of the tables that grow with clicks: created ahead, dropped whole once expired.

Two kinds (docs/retention.md):
- **days** of the deduplication tables, `processed_events` (event ids) and `daily_visitors` (who
  was seen on which day), kept `CounterSettings.dedup_retention_days`: longer than the topic
  keeps records, so a redelivery always finds its id;
- **months** of the per-person tables, `quarter_visitors`, `recipient_clicks`, `link_visitors`
  and `campaign_visitors` (migration 0090), kept `CounterSettings.visitor_retention_days`: a
  month is dropped once all of it is older than that. The counters hold no person and stay.

A partition is created before its clicks arrive (`maintain`: yesterday to `DAYS_AHEAD` days
ahead, this month and the next) or on demand for the days of a batch (`ensure_partitions`, which
the counter calls before counting): no default partition, so a partition can always be created
for a range and dropped as a whole (a default partition would have to be scanned, and would keep
rows of every age). Dropping a partition is instant and leaves no dead rows behind, where a
row-wise DELETE would scan, bloat and need vacuuming.

`link_visitors` and `campaign_visitors` are partitioned by the counter's epoch, the month a row
was written in (migration 0090 says why); `maintain` moves the epoch to the current month once
its partition exists, and never drops the current epoch.

An event that arrives for a day already dropped gets that day's partition back, and it is dropped
again at the next pruning; a redelivery can only miss its id if it arrives after the window, which
is longer than the topic keeps records. The counter refuses events older than that window, and
the visitor period is longer (settings check), so no month is written after it was dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

import asyncpg

TABLES = ("processed_events", "daily_visitors")
"""Tables partitioned by UTC day, kept `dedup_retention_days`."""
MONTH_TABLES = ("quarter_visitors", "recipient_clicks", "link_visitors", "campaign_visitors")
"""Tables of per-person data partitioned by UTC month, kept `visitor_retention_days`."""
EPOCH_TABLES = ("link_visitors", "campaign_visitors")
"""Month tables whose partition key is the counter's epoch (`visitor_epoch`)."""
_STORAGE = {"recipient_clicks": " WITH (fillfactor = 70)"}
"""Storage options of a month table's partitions (a partitioned table holds none itself)."""
DAYS_AHEAD = 2
"""Partitions created ahead of today, days."""
_LOCK = 0x0C11C8  # pg_advisory_xact_lock key: one process creates or drops partitions at a time
_NAME = re.compile(r"^(?P<table>[a-z_]+)_(?:p(?P<day>\d{8})|m(?P<month>\d{6}))$")


def month_of(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    """The first day of the month after `month`'s."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def partition_name(table: str, day: date) -> str:
    """`processed_events_p20261126` for a day table, `quarter_visitors_m202611` for a month one."""
    if table in MONTH_TABLES:
        return f"{table}_m{day:%Y%m}"
    return f"{table}_p{day:%Y%m%d}"


async def partitions(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, list[date]]:
    """table -> the days (month tables: the first days of the months) it has partitions for, in
    order, for each of the tables the current schema has (a schema migrated before 0090 has no
    month tables)."""
    rows = await conn.fetch(
        """
        SELECT parent.relname AS parent, child.relname AS name
        FROM pg_class parent
        LEFT JOIN pg_inherits ON pg_inherits.inhparent = parent.oid
        LEFT JOIN pg_class child ON child.oid = pg_inherits.inhrelid
        WHERE parent.relname = ANY($1::text[]) AND parent.relkind = 'p'
          AND parent.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
        """,
        [*TABLES, *MONTH_TABLES],
    )
    found: dict[str, list[date]] = {row["parent"]: [] for row in rows}
    for row in rows:
        match = _NAME.match(row["name"] or "")
        if not match or match["table"] != row["parent"]:
            continue
        d = match["day"] or match["month"] + "01"
        found[row["parent"]].append(date(int(d[:4]), int(d[4:6]), int(d[6:])))
    return {t: sorted(days) for t, days in found.items()}


def _bounds(table: str, start: date) -> tuple[str, str]:
    """The partition's FROM and TO literals (dates from `date` objects: safe to inline)."""
    if table in MONTH_TABLES:
        end = next_month(start)
        if table == "quarter_visitors":  # timestamptz: UTC midnights
            return f"{start.isoformat()} 00:00:00+00", f"{end.isoformat()} 00:00:00+00"
        return start.isoformat(), end.isoformat()
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


async def _create(conn: asyncpg.Connection, wanted: dict[str, set[date]]) -> list[str]:
    """Create the partitions of `wanted` (table -> starts) that are missing; the names made."""
    created: list[str] = []
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        have = await partitions(conn)
        for table, starts in wanted.items():
            for start in sorted(starts - set(have.get(table, starts))):
                name = partition_name(table, start)
                low, high = _bounds(table, start)
                await conn.execute(
                    f'CREATE TABLE "{name}" PARTITION OF "{table}"'
                    f" FOR VALUES FROM ('{low}') TO ('{high}'){_STORAGE.get(table, '')}"
                )
                created.append(name)
    return created


async def ensure_partitions(conn: asyncpg.Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions of `days` that are missing: those days in the day tables, their
    months in the month tables. Returns the names made."""
    wanted = set(days)
    if not wanted:
        return []
    months = {month_of(d) for d in wanted}
    return await _create(conn, {**{t: wanted for t in TABLES}, **{t: months for t in MONTH_TABLES}})


async def current_epoch(conn: asyncpg.Connection | asyncpg.Pool) -> date:
    """The month the counter writes link_visitors and campaign_visitors rows in."""
    epoch: date = await conn.fetchval("SELECT month FROM visitor_epoch")
    return epoch


def expired(
    have: dict[str, list[date]], *, keep_days: int, visitor_days: int, today: date, epoch: date
) -> list[str]:
    """The partitions of `have` (as `partitions` returns) past their period on `today`: days
    before `today - keep_days`; months that end on or before `today - visitor_days` (all their
    rows are older), except the current `epoch` and later."""
    day_cutoff = today - timedelta(days=keep_days)
    month_cutoff = today - timedelta(days=visitor_days)
    names = []
    for table, starts in have.items():
        for start in starts:
            if table in MONTH_TABLES:
                gone = next_month(start) <= month_cutoff
                if table in EPOCH_TABLES:
                    gone = gone and start < epoch
            else:
                gone = start < day_cutoff
            if gone:
                names.append(partition_name(table, start))
    return names


async def prune(
    conn: asyncpg.Connection, *, keep_days: int, visitor_days: int, today: date
) -> list[str]:
    """Drop the partitions past their period (`expired`); returns the names dropped."""
    async with conn.transaction():
        # DROP waits for the batches using the table; never hold up counting for long.
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        have, epoch = await partitions(conn), await current_epoch(conn)
        dropped = expired(
            have, keep_days=keep_days, visitor_days=visitor_days, today=today, epoch=epoch
        )
        for name in dropped:
            await conn.execute(f'DROP TABLE "{name}"')
        # which scopes had rows in the epochs dropped: ids and months, no person (migration 0091)
        gone = {m for t in EPOCH_TABLES for m in have.get(t, []) if partition_name(t, m) in dropped}
        await conn.execute(
            "DELETE FROM visitor_scope_epochs WHERE epoch = ANY($1::date[])", sorted(gone)
        )
    return dropped


async def advance_epoch(conn: asyncpg.Connection, month: date) -> bool:
    """Make `month` the counter's epoch unless it is already there or later (its partitions must
    exist); True when it moved. Waits for the counting transactions in flight, and holds the next
    ones until it commits (`visitor_epoch()`, migration 0090)."""
    async with conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        status: str = await conn.execute(
            "UPDATE visitor_epoch SET month = $1 WHERE month < $1", month_of(month)
        )
    return status == "UPDATE 1"


async def prepare(conn: asyncpg.Connection, *, today: date) -> list[str]:
    """Day partitions from yesterday to `DAYS_AHEAD` days ahead and month partitions for this
    month and the next, then the epoch moved to this month; returns the names created."""
    days = {today + timedelta(days=n) for n in range(-1, DAYS_AHEAD + 1)}
    months = {month_of(d) for d in days} | {next_month(month_of(today))}
    created = await _create(
        conn, {**{t: days for t in TABLES}, **{t: months for t in MONTH_TABLES}}
    )
    await advance_epoch(conn, today)
    return created


async def maintain(
    conn: asyncpg.Connection, *, keep_days: int, visitor_days: int, today: date
) -> list[str]:
    """The scheduled task: `prepare`, then `prune`. Returns the names created and dropped."""
    created = await prepare(conn, today=today)
    return created + await prune(conn, keep_days=keep_days, visitor_days=visitor_days, today=today)
