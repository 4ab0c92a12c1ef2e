"""Retention of per-person data (issue 18, part 3) against the real Postgres: months past the
period dropped whole, counts untouched, visitors seen within the period still known, the epoch
switch serialised with counting, the migration of stored rows, and no user agent or referrer in
any table."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import asyncpg
import orjson
import pytest

from services.api.insights import window_counts
from services.api.window import Window
from services.counter import retention
from services.counter.intake import Click, admit
from services.counter.retention import month_of, next_month
from shared import db, events
from shared.settings import Settings
from tests.faults.validator import stored_counts
from tests.integration.test_cli_operator import clicktrack
from tests.integration.test_counter_store import TODAY, apply, schema_before
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

MONTHS = retention.MONTH_TABLES
KEEP, VISITORS = 9, 400


def clk(link: int, visitor: str, at: datetime, *, campaign: int | None = 10, **kw: object) -> Click:
    """A click of `visitor` on `link` at `at`, taken as if the counter's clock said `at` (these
    tests count in months to come, as the counter will)."""
    event = make_event(
        link_id=link,
        visitor_id=visitor,
        campaign_id=campaign,
        occurred_at=at.isoformat().replace("+00:00", "Z"),
        **kw,
    )
    return admit(events.encode(event), max_bytes=65_536, now=at)


def counters(stored: dict[str, dict[object, object]]) -> dict[str, dict[object, object]]:
    """The counter tables of `stored_counts`, without the visitors (per-person data)."""
    return {k: v for k, v in stored.items() if k != "visitors"}


async def rows(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f'SELECT count(*) FROM "{table}"'))


async def wait_for_lock(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Until `conn`'s statement waits on a lock."""
    pid = conn.get_server_pid()
    for _ in range(3000):
        if await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the statement never waited on a lock")


async def test_months_past_the_period_are_dropped_whole_and_the_counts_stay(
    pool: asyncpg.Pool,
) -> None:
    h9, h10 = TODAY, TODAY + timedelta(hours=1)  # this month's, whatever the day
    clicks = [
        clk(1, "v:a", h9, recipient_id="p-1"),
        clk(1, "v:b", h9.replace(minute=5)),
        clk(2, "v:b", h10),
        clk(2, "bot:1", h10, is_bot=True),
    ]
    window = Window(TODAY, TODAY + timedelta(days=1), "day", "UTC")
    async with pool.acquire() as conn:
        await apply(conn, clicks, 0, 4)
    before = await stored_counts(pool)
    report = await window_counts(pool, "campaign", 10, window)
    assert (report.in_window.total, report.in_window.unique, report.in_window.bots) == (3, 2, 1)
    have = await retention.partitions(pool)
    this_month = month_of(TODAY.date())
    for table in MONTHS:
        assert have[table] == [this_month, next_month(this_month)], table
    assert [await rows(pool, t) for t in MONTHS] == [3, 1, 3, 2]

    # 62 days more than the period: this month and the next are wholly older than it
    later = TODAY.date() + timedelta(days=VISITORS + 62)
    async with pool.acquire() as conn:
        changed = await retention.maintain(conn, keep_days=KEEP, visitor_days=VISITORS, today=later)
    after = await retention.partitions(pool)
    new_days = [later + timedelta(days=n) for n in range(-1, 3)]
    new_months = sorted({month_of(d) for d in new_days} | {next_month(month_of(later))})
    for table in MONTHS:
        assert after[table] == new_months, table
    for table in retention.TABLES:
        assert after[table] == new_days, table
    dropped = [retention.partition_name(t, d) for t in retention.TABLES for d in have[t]] + [
        retention.partition_name(t, m) for t in MONTHS for m in have[t]
    ]
    assert sorted(n for n in changed if n in dropped) == sorted(dropped)
    assert [await rows(pool, t) for t in MONTHS] == [0, 0, 0, 0]
    # every counter is as it was, and so are the window's clicks; its uniques went with the rows
    assert counters(await stored_counts(pool)) == counters(before)
    report = await window_counts(pool, "campaign", 10, window)
    assert (report.in_window.total, report.in_window.unique, report.in_window.bots) == (3, 0, 1)

    # a click in the month just created counts; p-1 was not seen for longer than the period
    at = datetime.combine(later, h9.timetz())
    async with pool.acquire() as conn:
        await apply(conn, [clk(1, "v:a", at, recipient_id="p-1")], 4, 5)
        # a month nobody created yet is made for the batch that needs it
        far = at + timedelta(days=70)
        await apply(conn, [clk(1, "v:z", far)], 5, 6)
    stored = await stored_counts(pool)
    assert stored["links"][1] == (4, 4, 0)
    assert stored["campaigns"][10] == (5, 4, 1)
    assert month_of(far.date()) in (await retention.partitions(pool))["quarter_visitors"]
    assert await pool.fetchval("SELECT sum(clicks) FROM recipient_clicks") == 1


async def test_a_visitor_seen_within_the_period_stays_known_across_epochs(
    pool: asyncpg.Pool,
) -> None:
    m0 = month_of(TODAY.date())
    m1 = next_month(m0)
    async with pool.acquire() as conn:
        await apply(conn, [clk(1, "v:a", TODAY), clk(1, "v:b", TODAY)], 0, 2)
        assert await retention.prepare(conn, today=m1) != []
        assert await retention.current_epoch(conn) == m1
        await apply(conn, [clk(1, "v:a", TODAY.replace(minute=1))], 2, 3)
    assert (await stored_counts(pool))["links"] == {1: (3, 2, 0)}
    found = await pool.fetch("SELECT visitor_id, epoch, first_day FROM link_visitors ORDER BY 1, 2")
    d = TODAY.date()
    assert [tuple(r) for r in found] == [("v:a", m0, d), ("v:a", m1, d), ("v:b", m0, d)]

    # the period after m1 began: m0 is wholly older, m1 is not
    async with pool.acquire() as conn:
        dropped = await retention.prune(
            conn, keep_days=KEEP, visitor_days=VISITORS, today=m1 + timedelta(days=VISITORS)
        )
        assert sorted(n for n in dropped if "_m" in n) == sorted(
            retention.partition_name(t, m0) for t in MONTHS
        )
        await apply(conn, [clk(1, "v:a", TODAY.replace(minute=2)), clk(1, "v:b", TODAY)], 3, 5)
    # m0's scopes went with its partitions; those written since are in the epoch m1
    scopes = await pool.fetch("SELECT scope, scope_id, epoch FROM visitor_scope_epochs ORDER BY 1")
    assert [tuple(r) for r in scopes] == [(b"c", 10, m1), (b"l", 1, m1)]
    # v:a clicked in m1 and is still known; v:b's last click was in m0, and it is met anew
    assert (await stored_counts(pool))["links"] == {1: (5, 3, 0)}
    assert (await stored_counts(pool))["campaigns"] == {10: (5, 3, 0)}


async def test_an_epoch_switch_waits_for_the_counting_in_flight_and_holds_the_next(
    pool: asyncpg.Pool,
) -> None:
    """Counting transactions hold the epoch (SHARE): a switch waits for them, and a batch that
    comes meanwhile waits for the switch and then writes the new epoch, seeing all the old one."""
    m0 = month_of(TODAY.date())
    m1 = next_month(m0)
    async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
        await retention.ensure_partitions(a, [TODAY.date(), m1])
        tx = a.transaction()
        await tx.start()
        assert await a.fetchval("SELECT visitor_epoch()") == m0
        switching = asyncio.create_task(retention.advance_epoch(b, m1))
        await wait_for_lock(pool, b)
        counting = asyncio.create_task(apply(c, [clk(1, "v:a", TODAY)], 0, 1))
        await wait_for_lock(pool, c)
        assert not switching.done() and not counting.done()
        await tx.commit()
        assert await switching is True
        await counting
    assert await pool.fetchval("SELECT epoch FROM link_visitors") == m1


async def test_retention_command_lists_then_drops_and_audits(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    old = TODAY.date() - timedelta(days=800)
    async with pool.acquire() as conn:
        await apply(conn, [clk(1, "v:a", datetime.combine(old, TODAY.timetz()))], 0, 1)
    stale = sorted(
        [retention.partition_name(t, old) for t in retention.TABLES]
        + [retention.partition_name(t, month_of(old)) for t in MONTHS]
    )
    before = await retention.partitions(pool)

    async def invoke(*args: str) -> list[str]:
        status, out, err = await clicktrack(settings, "retention", "run", *args)
        assert status == 0, err
        return out.splitlines()

    listed = await invoke("--dry-run")
    assert sorted(listed) == sorted(f"would drop {n}" for n in stale)
    assert await retention.partitions(pool) == before
    assert await rows(pool, "quarter_visitors") == 1

    ran = await invoke("--ticket", "OPS-18")
    assert sorted(line for line in ran if line.startswith("dropped")) == [
        f"dropped {n}" for n in stale
    ]
    assert await rows(pool, "quarter_visitors") == 0
    assert (await stored_counts(pool))["links"] == {1: (1, 1, 0)}
    entry = await pool.fetchrow(
        "SELECT operator, action, org_id, ticket, detail FROM operator_audit"
    )
    assert entry["action"] == "retention.dropped" and entry["operator"].startswith("cli:")
    assert (entry["org_id"], entry["ticket"]) == (None, "OPS-18")
    detail = orjson.loads(entry["detail"])
    assert sorted(detail.pop("partitions")) == stale
    assert detail == {"keep_days": KEEP, "visitor_days": VISITORS}

    assert await invoke("--dry-run") == ["nothing to drop"]
    assert await invoke() == ["nothing to drop"]
    assert await pool.fetchval("SELECT count(*) FROM operator_audit") == 1


async def test_no_table_keeps_a_user_agent_or_a_referrer(pool: asyncpg.Pool) -> None:
    """They travel on the topic only; a click's bot reason is kept as a count of its kind."""
    agent, referer = "Mozilla/5.0 ua-marker-7f3a", "https://ref-marker-7f3a.example/"
    async with pool.acquire() as conn:
        await apply(
            conn,
            [
                clk(1, "v:a", TODAY, user_agent=agent, referer=referer, recipient_id="p-1"),
                clk(1, "v:b", TODAY, user_agent=agent, is_bot=True, bot_reason="ua:WhatsApp"),
            ],
            0,
            2,
        )
    columns = await pool.fetch(
        "SELECT table_name::text, column_name::text FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
        " AND column_name ~* '(agent|refer|ua$|^ua_)' ORDER BY 1, 2"
    )
    assert {(r[0], r[1]) for r in columns} == {
        ("quarter_counters", "bots_user_agent"),
        ("quarter_counters", "bots_referrer"),
    }
    tables = await pool.fetch(
        "SELECT relname::text FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
        " AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY 1"
    )
    assert len(tables) > 15
    for (table,) in tables:
        found = await pool.fetchval(
            f"SELECT count(*) FROM \"{table}\" t WHERE t::text ~ 'marker-7f3a'"
        )
        assert found == 0, table
    assert await pool.fetchval("SELECT sum(bots_user_agent) FROM quarter_counters") == 1


async def test_migration_0090_puts_stored_rows_in_their_months(settings: Settings) -> None:
    """Rows counted before 0090 move into partitions: visits by quarter, a recipient's row by its
    last click, an all-time visitor row by its last visit on the scope (or when first seen)."""
    jan, feb, mar = (datetime(2026, m, 10, 8, tzinfo=UTC) for m in (1, 2, 3))
    month = month_of(datetime.now(UTC).date())
    async with schema_before(settings, "0090") as (schema, pool):
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO quarter_visitors VALUES"
                " (1, $1, 'v:a', 'sms', 3, 10, 'one_time'),"
                " (1, $2, 'v:a', 'sms', 3, 10, 'one_time'),"
                " (2, $1, 'v:b', 'sms', 3, 10, 'one_time')",
                jan,
                mar,
            )
            await conn.execute(
                "INSERT INTO recipient_clicks (link_id, recipient_id, campaign_id, clicks,"
                " bot_clicks, first_click, last_click) VALUES"
                " (1, 'p-1', 10, 2, 0, $1, $2), (1, 'p-2', 10, 0, 1, NULL, NULL)",
                jan,
                feb,
            )
            await conn.execute(
                "INSERT INTO link_visitors (link_id, visitor_id, first_seen, first_day)"
                " VALUES (1, 'v:a', $1, $2), (2, 'v:b', $1, $2), (3, 'v:c', $3, NULL)",
                jan,
                jan.date(),
                feb,
            )
            await conn.execute(
                "INSERT INTO campaign_visitors (campaign_id, visitor_id, first_seen, first_day)"
                " VALUES (10, 'v:a', $1, $2), (10, 'v:b', $1, $2)",
                jan,
                jan.date(),
            )
        async with pool.acquire() as conn:
            assert "0090_visitor_partitions" in await db.migrate(conn, schema)

        async def placed(query: str) -> list[tuple[object, ...]]:
            return [tuple(r) for r in await pool.fetch(query)]

        assert await placed(
            "SELECT tableoid::regclass::text, link_id, visitor_id FROM quarter_visitors"
            " ORDER BY 1, 2"
        ) == [
            ("quarter_visitors_m202601", 1, "v:a"),
            ("quarter_visitors_m202601", 2, "v:b"),
            ("quarter_visitors_m202603", 1, "v:a"),
        ]
        assert await placed(
            "SELECT recipient_id, month, clicks, bot_clicks, first_click FROM recipient_clicks"
            " ORDER BY 1"
        ) == [("p-1", date(2026, 2, 1), 2, 0, jan), ("p-2", month, 0, 1, None)]
        assert await placed(
            "SELECT visitor_id, epoch, first_day FROM link_visitors ORDER BY 1"
        ) == [
            ("v:a", date(2026, 3, 1), jan.date()),
            ("v:b", date(2026, 1, 1), jan.date()),
            ("v:c", date(2026, 2, 1), None),
        ]
        assert await placed("SELECT visitor_id, epoch FROM campaign_visitors ORDER BY 1") == [
            ("v:a", date(2026, 3, 1)),
            ("v:b", date(2026, 1, 1)),
        ]
        assert await retention.current_epoch(pool) == max(month, date(2026, 3, 1))
        # 0091: the epochs each link and campaign has rows in
        assert await placed(
            "SELECT scope, scope_id, epoch FROM visitor_scope_epochs ORDER BY 1, 2, 3"
        ) == [
            (b"c", 10, date(2026, 1, 1)),
            (b"c", 10, date(2026, 3, 1)),
            (b"l", 1, date(2026, 3, 1)),
            (b"l", 2, date(2026, 1, 1)),
            (b"l", 3, date(2026, 2, 1)),
        ]
        # counting goes on over the migrated rows: v:a is known, v:d is new
        async with pool.acquire() as conn:
            await apply(conn, [clk(1, "v:a", TODAY), clk(1, "v:d", TODAY)], 0, 2)
        assert (await stored_counts(pool))["links"] == {1: (2, 1, 0)}
