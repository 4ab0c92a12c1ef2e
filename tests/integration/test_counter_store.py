"""The counting transaction against the real Postgres: every dimension exact, redeliveries
harmless, and the partitions of the dedup tables created and dropped whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.counter import retention, store
from services.counter.intake import Click, admit
from services.counter.offsets import ResumePoint, resume_points
from shared import db, events
from shared.counts import Counts
from shared.settings import Settings
from tests.faults.validator import stored_counts
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1)


def clk(link: int, visitor: str, at: datetime, *, campaign: int | None = 10, **kw: object) -> Click:
    event = make_event(
        link_id=link,
        visitor_id=visitor,
        campaign_id=campaign,
        occurred_at=at.isoformat().replace("+00:00", "Z"),
        **kw,
    )
    return admit(events.encode(event), max_bytes=65_536)


async def migrate_before(conn: asyncpg.Connection, schema: str, version: str) -> None:
    """Create `schema` with the migrations older than `version` only, in the transaction open
    on `conn` (the search path stays on `schema` until it ends)."""
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'SET LOCAL search_path TO "{schema}"')
    await conn.execute(
        "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for found, sql in db.migration_files():
        if found < version:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1)", found)


@asynccontextmanager
async def schema_before(
    settings: Settings, version: str
) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A schema of its own with the migrations older than `version` only, and a pool of one
    connection on it; dropped afterwards. `db.migrate(conn, schema)` then applies the rest."""
    schema = f"{settings.postgres.schema}_m{version}"
    async with db.pool(settings.changed(POSTGRES_SCHEMA=schema).postgres, max_size=1) as pool:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await migrate_before(conn, schema, version)
            yield schema, pool
        finally:
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def apply(
    conn: asyncpg.Connection, clicks: list[Click], first: int, nxt: int
) -> list[Counts]:
    await retention.ensure_partitions(conn, {c.day for c in clicks})
    result = await store.apply_batch(
        conn, group="g", topic="t", clicks=clicks, offsets={0: (first, nxt)}
    )
    return result.counts


async def test_one_batch_after_another_counts_every_dimension(pool: asyncpg.Pool) -> None:
    d1, d2 = YESTERDAY.date(), TODAY.date()
    h9, h10 = YESTERDAY.replace(hour=9), YESTERDAY.replace(hour=10)
    first = [
        clk(1, "v:a", h9),
        clk(1, "v:a", h9.replace(minute=5)),
        clk(1, "v:b", h9.replace(minute=7)),
        clk(1, "bot:1", h9, is_bot=True),
        clk(2, "v:a", h10, channel="whatsapp"),
    ]
    second = [clk(1, "v:a", TODAY), clk(3, "v:c", TODAY, campaign=None)]
    async with pool.acquire() as conn:
        await apply(conn, first, 0, 5)
        returned = await apply(conn, second, 5, 7)
    stored = await stored_counts(pool)
    assert stored["links"] == {1: (4, 2, 1), 2: (1, 1, 0), 3: (1, 1, 0)}
    assert stored["campaigns"] == {10: (5, 2, 1)}
    assert stored["days"] == {
        ("link", 1, d1): (3, 2, 1),
        ("link", 1, d2): (1, 1, 0),
        ("link", 2, d1): (1, 1, 0),
        ("link", 3, d2): (1, 1, 0),
        ("campaign", 10, d1): (4, 2, 1),
        ("campaign", 10, d2): (1, 1, 0),
    }
    assert stored["quarters"] == {
        (1, h9, "sms"): (3, 1),
        (2, h10, "whatsapp"): (1, 0),
        (1, TODAY, "sms"): (1, 0),
        (3, TODAY, "sms"): (1, 0),
    }
    visits = await pool.fetch(
        "SELECT link_id, quarter, visitor_id FROM quarter_visitors ORDER BY 1, 2, 3"
    )
    assert [tuple(r) for r in visits] == [
        (1, h9, "v:a"),
        (1, h9, "v:b"),
        (1, TODAY, "v:a"),
        (2, h10, "v:a"),
        (3, TODAY, "v:c"),
    ]
    # the second batch returned the absolute values of every Redis counter it touched
    assert set(returned) == {
        Counts("link", 1, 4, 2, 1),
        Counts("link", 3, 1, 1, 0),
        Counts("campaign", 10, 5, 2, 1),
        Counts("link", 1, 1, 1, 0, d2),
        Counts("link", 3, 1, 1, 0, d2),
        Counts("campaign", 10, 1, 1, 0, d2),
    }
    row = await pool.fetchrow("SELECT org_id, campaign_id FROM link_counters WHERE link_id = 1")
    assert tuple(row) == (3, 10)
    offsets = await resume_points(pool, "g", "t")
    assert offsets == {0: ResumePoint(replay_from=5, next_offset=7)}


async def test_quarters_count_taps_after_expiry_and_bots_by_reason_apart(
    pool: asyncpg.Pool,
) -> None:
    q = YESTERDAY.replace(hour=18, minute=30)  # 00:00 in India: its quarter starts the day there
    batch = [
        clk(1, "v:a", q.replace(minute=29), recipient_id="p1"),  # the quarter before
        clk(1, "v:a", q, recipient_id="p1"),
        clk(1, "v:a", q.replace(minute=44), recipient_id="p1"),
        clk(1, "v:b", q.replace(minute=31), recipient_id="p2", outcome="fallback"),
        clk(1, "v:c", q.replace(minute=32), recipient_id="p3", outcome="gone"),
        clk(1, "v:d", q, is_bot=True, bot_reason="ua:WhatsApp", recipient_id="p2"),
        clk(1, "v:d", q, is_bot=True, bot_reason="referer:proofpoint"),
        clk(1, "v:d", q, is_bot=True, bot_reason="cidr:198.51.100.0/24"),
        clk(1, "v:d", q, is_bot=True, bot_reason="head", outcome="gone"),
        clk(1, "v:d", q, is_bot=True),
    ]
    async with pool.acquire() as conn:
        await apply(conn, batch, 0, len(batch))
    rows = await pool.fetch(
        "SELECT quarter, total_clicks, bot_clicks, after_expiry, bots_user_agent, bots_referrer,"
        " bots_network, bots_head FROM quarter_counters WHERE link_id = 1 ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        (q.replace(minute=15), 1, 0, 0, 0, 0, 0, 0),
        (q, 2, 5, 2, 1, 1, 1, 1),
    ]
    # the human clicks on the live link alone make visitors (and uniques): r:p1 only
    assert (await stored_counts(pool))["links"] == {1: (3, 1, 5)}
    visits = await pool.fetch("SELECT quarter, visitor_id FROM quarter_visitors ORDER BY 1")
    assert [tuple(r) for r in visits] == [(q.replace(minute=15), "r:p1"), (q, "r:p1")]
    per_recipient = await pool.fetch(
        "SELECT recipient_id, campaign_id, clicks, bot_clicks, after_expiry, first_click,"
        " last_click FROM recipient_clicks ORDER BY 1"
    )
    assert [tuple(r) for r in per_recipient] == [
        ("p1", 10, 3, 0, 0, q.replace(minute=29), q.replace(minute=44)),
        ("p2", 10, 0, 1, 1, None, None),
        ("p3", 10, 0, 0, 1, None, None),
    ]


async def test_a_batch_read_again_counts_nothing_and_returns_the_same_values(
    pool: asyncpg.Pool,
) -> None:
    batch = [clk(5, "v:a", TODAY), clk(5, "v:b", TODAY), clk(5, "bot", TODAY, is_bot=True)]
    async with pool.acquire() as conn:
        first = await apply(conn, batch, 0, 3)
        before = await stored_counts(pool)
        await retention.ensure_partitions(conn, [TODAY.date()])
        again = await store.apply_batch(
            conn, group="g", topic="t", clicks=[*batch, batch[0]], offsets={0: (0, 3)}
        )
    assert (again.counted, again.duplicates) == (0, 4)
    assert set(again.counts) == set(first)
    assert await stored_counts(pool) == before
    assert await resume_points(pool, "g", "t") == {0: ResumePoint(0, 3)}


async def test_an_older_batch_never_moves_the_stored_offsets_back(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await apply(conn, [clk(6, "v:a", TODAY)], 10, 20)
        await apply(conn, [clk(6, "v:b", TODAY)], 0, 10)  # a late writer after a rebalance
    assert await resume_points(pool, "g", "t") == {0: ResumePoint(10, 20)}
    assert (await stored_counts(pool))["links"] == {6: (2, 2, 0)}


async def test_a_new_visitor_takes_no_daily_row_and_its_days_stay_exact(pool: asyncpg.Pool) -> None:
    """Migration 0013: a new visitor's first day is on its all-time row; other days take daily
    rows. A visitor first seen yesterday is new today once; a second click today is not."""
    d1, d2 = YESTERDAY.date(), TODAY.date()
    async with pool.acquire() as conn:
        # one batch sees v:a on two days: the later day takes the daily rows
        await apply(conn, [clk(8, "v:a", TODAY), clk(8, "v:a", YESTERDAY)], 0, 2)
        await apply(conn, [clk(8, "v:b", YESTERDAY)], 2, 3)
        await apply(conn, [clk(8, "v:b", TODAY), clk(8, "v:b", TODAY.replace(minute=1))], 3, 5)
        await apply(conn, [clk(8, "v:b", TODAY.replace(minute=2)), clk(8, "v:a", TODAY)], 5, 7)
    stored = await stored_counts(pool)
    assert stored["links"] == {8: (7, 2, 0)}
    assert stored["campaigns"] == {10: (7, 2, 0)}
    assert stored["days"] == {
        ("link", 8, d1): (2, 2, 0),
        ("link", 8, d2): (5, 2, 0),
        ("campaign", 10, d1): (2, 2, 0),
        ("campaign", 10, d2): (5, 2, 0),
    }
    visitors = await pool.fetch(
        "SELECT visitor_id, first_day FROM link_visitors UNION ALL"
        " SELECT visitor_id, first_day FROM campaign_visitors ORDER BY 1, 2"
    )
    assert [tuple(r) for r in visitors] == [("v:a", d1)] * 2 + [("v:b", d1)] * 2
    daily = await pool.fetch("SELECT day, scope, visitor_id FROM daily_visitors ORDER BY 1, 2, 3")
    assert [tuple(r) for r in daily] == [
        (d2, b"c", "v:a"),
        (d2, b"c", "v:b"),
        (d2, b"l", "v:a"),
        (d2, b"l", "v:b"),
    ]


async def test_visitors_from_before_migration_0013_keep_their_daily_rows(
    settings: Settings,
) -> None:
    """A database counted before 0013 migrates in place; its visitor rows have no first_day and
    rely on daily_visitors, as then, while new visitors take the first day."""
    d1, d2 = YESTERDAY.date(), TODAY.date()
    async with schema_before(settings, "0013") as (schema, pool):
        async with pool.acquire() as conn:
            await retention.ensure_partitions(conn, [d1, d2])
            # what the counter wrote for v:old's clicks on link 9 yesterday and today
            await conn.execute(
                "INSERT INTO link_visitors (link_id, visitor_id) VALUES (9, 'v:old');"
                " INSERT INTO campaign_visitors (campaign_id, visitor_id)"
                " VALUES (10, 'v:old');"
                f" INSERT INTO daily_visitors VALUES ('{d1}', 'l', 9, 'v:old'),"
                f" ('{d1}', 'c', 10, 'v:old'), ('{d2}', 'l', 9, 'v:old')"
            )
            applied = await db.migrate(conn, schema)
            assert applied == [v for v, _ in db.migration_files() if v >= "0013"]
            await apply(conn, [clk(9, "v:old", TODAY), clk(9, "v:old", YESTERDAY)], 0, 2)
            await apply(conn, [clk(9, "v:old", TODAY.replace(minute=1))], 2, 3)
            await apply(conn, [clk(9, "v:new", TODAY), clk(9, "v:new", TODAY)], 3, 5)
        stored = await stored_counts(pool)
        assert stored["days"] == {
            ("link", 9, d1): (1, 0, 0),
            ("link", 9, d2): (4, 1, 0),
            ("campaign", 10, d1): (1, 0, 0),
            ("campaign", 10, d2): (4, 2, 0),
        }
        assert stored["links"] == {9: (5, 1, 0)}


async def test_a_visitor_committed_by_a_concurrent_batch_is_known_with_its_first_day(
    pool: asyncpg.Pool,
) -> None:
    """A visitor row committed after the statement began is not in the statement's snapshot; the
    statement waited for it on insert, reads its first day afresh, and counts the visitor as
    known: seen today, so not a daily unique either."""
    async with pool.acquire() as other, pool.acquire() as conn:
        await retention.ensure_partitions(conn, [TODAY.date()])
        pid = conn.get_server_pid()
        tx = other.transaction()
        await tx.start()
        await other.execute(
            "INSERT INTO link_visitors (epoch, link_id, visitor_id, first_day)"
            " SELECT month, 11, 'v:x', $1 FROM visitor_epoch",
            TODAY.date(),
        )
        batch = [clk(11, "v:x", TODAY, campaign=None)]
        counting = asyncio.create_task(apply(conn, batch, 0, 1))
        for _ in range(3000):  # until the batch waits on the uncommitted row
            if await pool.fetchval(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            ):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the batch never waited on the uncommitted visitor row")
        await tx.commit()
        await counting
        # another visitor row committed before a batch began is read in the statement's snapshot
        await apply(conn, [clk(11, "v:x", YESTERDAY, campaign=None)], 1, 2)
    stored = await stored_counts(pool)
    assert stored["links"] == {11: (2, 0, 0)}
    assert stored["days"] == {
        ("link", 11, TODAY.date()): (1, 0, 0),
        ("link", 11, YESTERDAY.date()): (1, 1, 0),
    }


async def _partition_names(pool: asyncpg.Pool) -> dict[str, list[date]]:
    return await retention.partitions(pool)


async def test_partitions_are_made_ahead_and_dropped_whole_after_the_window(
    pool: asyncpg.Pool,
) -> None:
    today = TODAY.date()
    old = [today - timedelta(days=n) for n in (12, 10, 9)]
    async with pool.acquire() as conn:
        stale = [clk(7, f"v:{d}", datetime.combine(d, TODAY.timetz())) for d in old]
        await apply(conn, stale, 0, 3)
        changed = await retention.maintain(conn, keep_days=9, visitor_days=400, today=today)
    kept = [today - timedelta(days=9), *(today + timedelta(days=n) for n in range(-1, 3))]
    assert (await _partition_names(pool))["processed_events"] == kept
    assert (await _partition_names(pool))["daily_visitors"] == kept
    assert sorted(n for n in changed if n.startswith("processed_events")) == sorted(
        [retention.partition_name("processed_events", d) for d in kept[1:]]
        + [retention.partition_name("processed_events", d) for d in old[:2]]
    )
    # the ids of the kept day are still there; the counters never lose anything
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 1
    assert (await stored_counts(pool))["links"] == {7: (3, 3, 0)}
    # a straggler for a dropped day gets its partition back
    async with pool.acquire() as conn:
        await apply(conn, [clk(7, "v:late", datetime.combine(old[0], TODAY.timetz()))], 3, 4)
    assert old[0] in (await _partition_names(pool))["processed_events"]


async def test_partitions_command_makes_the_days_ahead(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    env = {
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "REDIS_URL": settings.redis.url.reveal(),
    }
    # the command runs its own event loop: give it a thread of its own
    first = await asyncio.to_thread(CliRunner().invoke, cli, ["partitions"], env=env)
    assert first.exit_code == 0, first.output
    today = datetime.now(UTC).date()
    days = [today + timedelta(days=n) for n in range(-1, 3)]
    # the months of the visitor tables: this one and the next came with migration 0090
    months = {retention.month_of(d) for d in days} - {
        retention.month_of(today),
        retention.next_month(retention.month_of(today)),
    }
    assert sorted(first.output.split()) == sorted(
        [retention.partition_name(t, d) for t in retention.TABLES for d in days]
        + [retention.partition_name(t, m) for t in retention.MONTH_TABLES for m in months]
    )
    again = await asyncio.to_thread(CliRunner().invoke, cli, ["partitions"], env=env)
    assert again.output == "partitions are up to date\n"


async def test_migration_0005_keeps_the_ids_counted_before_it(settings: Settings) -> None:
    """A database counted with the old unpartitioned table keeps deduplicating those ids."""
    async with schema_before(settings, "0005") as (schema, pool):
        await pool.execute(
            "INSERT INTO processed_events (event_id, processed_at) VALUES"
            " ('00000000-0000-7000-8000-000000000001', '2026-11-20 23:59:59+00'),"
            " ('00000000-0000-7000-8000-000000000002', '2026-11-21 00:00:00+00')"
        )
        async with pool.acquire() as conn:
            applied = await db.migrate(conn, schema)
        assert "0005_counter_dimensions" in applied
        rows = await pool.fetch(
            "SELECT tableoid::regclass::text AS part, event_id::text FROM processed_events"
            " ORDER BY event_id"
        )
        assert [tuple(r) for r in rows] == [
            ("processed_events_p20261120", "00000000-0000-7000-8000-000000000001"),
            ("processed_events_p20261121", "00000000-0000-7000-8000-000000000002"),
        ]


async def test_counter_tables_leave_room_for_heap_only_updates(pool: asyncpg.Pool) -> None:
    """Migration 0012: every batch rewrites the counters it touches; free room on their pages lets
    Postgres write the new version beside the old one, with no new index entry."""
    rows = await pool.fetch(
        "SELECT relname::text, reloptions FROM pg_class"
        " WHERE relnamespace = current_schema()::regnamespace AND relname::text = ANY($1)",
        ["link_counters", "campaign_counters", "quarter_counters", "daily_counters"],
    )
    assert {r["relname"]: r["reloptions"] for r in rows} == {
        "link_counters": ["fillfactor=50"],
        "campaign_counters": ["fillfactor=50"],
        "quarter_counters": ["fillfactor=70"],
        "daily_counters": ["fillfactor=70"],
    }
    # recipient_clicks is partitioned by month (0090): each month's partition keeps the room
    months = await pool.fetch(
        "SELECT c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'recipient_clicks'::regclass"
    )
    assert [r["reloptions"] for r in months] == [["fillfactor=70"]] * 2


async def test_a_batch_split_by_campaign_counts_the_same_and_survives_a_crash_before_offsets(
    pool: asyncpg.Pool,
) -> None:
    """The counter's split path: shares counted at once on two connections, offsets stored
    after both. A crash before the offsets means the whole batch is read again: what a share
    already counted is then a duplicate, and the totals are those of one single statement."""
    batch = [
        clk(1, "v:a", TODAY, campaign=10),
        clk(2, "v:a", TODAY, campaign=11),
        clk(2, "v:b", TODAY, campaign=11),
        clk(3, "v:a", TODAY, campaign=None),
        clk(4, "v:c", TODAY, campaign=None, is_bot=True),
        clk(1, "v:d", YESTERDAY, campaign=10),
    ]
    shares = store.split_by_campaign(batch, 2)
    assert sorted(len(s) for s in shares) == [3, 3]
    for share in shares:  # no campaign and no link in two shares
        others = [c for s in shares if s is not share for c in s]
        assert not {c.link_id for c in share} & {c.link_id for c in others}
        assert not {c.campaign_id for c in share} - {None} & {c.campaign_id for c in others}
    async with pool.acquire() as one, pool.acquire() as two:
        await retention.ensure_partitions(one, {c.day for c in batch})
        done = await asyncio.gather(
            *(
                store.apply_batch(conn, group="g", topic="t", clicks=share, offsets={})
                for conn, share in zip((one, two), shares, strict=True)
            )
        )
        assert sum(r.counted for r in done) == 6
        assert await resume_points(pool, "g", "t") == {}  # crashed before the offsets
        again = await store.apply_batch(
            one, group="g", topic="t", clicks=batch, offsets={0: (0, 6)}
        )
    assert (again.counted, again.duplicates) == (0, 6)
    stored = await stored_counts(pool)
    assert stored["links"] == {1: (2, 2, 0), 2: (2, 2, 0), 3: (1, 1, 0), 4: (0, 0, 1)}
    assert stored["campaigns"] == {10: (2, 2, 0), 11: (2, 2, 0)}
    assert await resume_points(pool, "g", "t") == {0: ResumePoint(0, 6)}
