"""The validator: what Postgres and Redis must hold after a workload, computed the plain way,
and every difference found, naming any click missing or counted in excess."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from shared import events
from shared.counts import CountStore
from tests.faults.workload import Workload, click_number

Key = tuple[int, int, int]  # total, unique, bots


@dataclass
class Expected:
    """The exact counts of a workload, computed the plain way."""

    links: dict[int, Key] = field(default_factory=dict)
    campaigns: dict[int, Key] = field(default_factory=dict)
    days: dict[tuple[str, int, date], Key] = field(default_factory=dict)
    quarters: dict[tuple[int, datetime, str], tuple[int, int]] = field(default_factory=dict)
    """(link, UTC quarter hour, channel) -> (total, bots)."""


def expected_counts(clicks: Iterable[events.ClickEvent]) -> Expected:
    total: dict[tuple[object, ...], int] = defaultdict(int)
    bots: dict[tuple[object, ...], int] = defaultdict(int)
    seen: dict[tuple[object, ...], set[str]] = defaultdict(set)
    quarter_keys: set[tuple[int, datetime, str]] = set()
    for c in clicks:
        at = datetime.fromisoformat(c.occurred_at)
        day = at.date()
        quarter = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
        scopes: list[tuple[object, ...]] = [("link", c.link_id), ("link", c.link_id, day)]
        if c.campaign_id:
            scopes += [("campaign", c.campaign_id), ("campaign", c.campaign_id, day)]
        qk = (c.link_id, quarter, c.channel)
        quarter_keys.add(qk)
        for s in [*scopes, ("quarter", *qk)]:
            if c.is_bot:
                bots[s] += 1
            else:
                total[s] += 1
        if not c.is_bot:
            for s in scopes:
                seen[s].add(c.visitor_id)
    out = Expected()
    for s in set(total) | set(bots):
        value = (total[s], len(seen.get(s, ())), bots[s])
        if s[0] == "link" and len(s) == 2:
            out.links[s[1]] = value  # type: ignore[index]
        elif s[0] == "campaign" and len(s) == 2:
            out.campaigns[s[1]] = value  # type: ignore[index]
        elif s[0] in ("link", "campaign"):
            out.days[s] = value  # type: ignore[index]
    for qk in quarter_keys:
        out.quarters[qk] = (total[("quarter", *qk)], bots[("quarter", *qk)])
    return out


async def validate(
    pool: asyncpg.Pool, client: aioredis.Redis, workload: Workload, *, check_redis: bool = True
) -> list[str]:
    """Every difference between what was stored and the workload's expected counts.

    Empty when Postgres (and Redis) hold exactly the counts of the distinct clicks.
    """
    problems: list[str] = []
    ids = {r["event_id"] for r in await pool.fetch("SELECT event_id FROM processed_events")}
    counted = {click_number(i) for i in ids}
    wanted = set(range(len(workload.clicks)))
    if missing := sorted(wanted - counted):
        problems.append(f"clicks never counted ({len(missing)}): {missing[:50]}")
    if extra := sorted(counted - wanted):
        problems.append(f"clicks counted that were never sent ({len(extra)}): {extra[:50]}")
    exp = expected_counts(workload.clicks)
    pg = await stored_counts(pool)
    for name in ("links", "campaigns", "days"):
        want, got = getattr(exp, name), pg[name]
        for k in sorted(set(want) | set(got), key=str):
            if want.get(k) != got.get(k):
                problems.append(f"postgres {name} {k}: expected {want.get(k)}, found {got.get(k)}")
    for k in sorted(set(exp.quarters) | set(pg["quarters"]), key=str):
        w, g = exp.quarters.get(k), pg["quarters"].get(k)
        if w != g:
            problems.append(f"postgres quarter {k}: expected {w}, found {g}")
    for link, w in exp.links.items():
        seen = pg["visitors"].get(link, 0)
        if seen != w[1]:
            problems.append(f"quarter_visitors of link {link} hold {seen} visitors, not {w[1]}")
    if check_redis:
        problems += await _compare_redis(CountStore(client), exp)
    return problems


async def _compare_redis(counts: CountStore, exp: Expected) -> list[str]:
    problems = []
    wanted: list[tuple[str, int, date | None, Key]] = [
        *(("link", i, None, v) for i, v in exp.links.items()),
        *(("campaign", i, None, v) for i, v in exp.campaigns.items()),
        *((s, i, d, v) for (s, i, d), v in exp.days.items()),
    ]
    for scope, scope_id, day, value in wanted:
        got = await counts.get_counts(scope, scope_id, day)
        found = (got.total, got.unique, got.bots) if got else None
        if found != value:
            problems.append(f"redis {scope} {scope_id} {day}: expected {value}, found {found}")
    return problems


async def stored_counts(pool: asyncpg.Pool) -> dict[str, dict[Any, Any]]:
    """Every counter row in Postgres, keyed like `Expected`, and the distinct visitors per link
    that quarter_visitors holds (`visitors`)."""
    out: dict[str, dict[Any, Any]] = {}
    rows = await pool.fetch(
        "SELECT link_id, total_clicks, unique_clicks, bot_clicks FROM link_counters"
    )
    out["links"] = {r[0]: (r[1], r[2], r[3]) for r in rows}
    rows = await pool.fetch(
        "SELECT campaign_id, total_clicks, unique_clicks, bot_clicks FROM campaign_counters"
    )
    out["campaigns"] = {r[0]: (r[1], r[2], r[3]) for r in rows}
    rows = await pool.fetch(
        "SELECT scope, scope_id, day, total_clicks, unique_clicks, bot_clicks FROM daily_counters"
    )
    out["days"] = {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}
    rows = await pool.fetch(
        "SELECT link_id, quarter, channel, total_clicks, bot_clicks FROM quarter_counters"
    )
    out["quarters"] = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rows}
    rows = await pool.fetch(
        "SELECT link_id, count(DISTINCT visitor_id) FROM quarter_visitors GROUP BY 1"
    )
    out["visitors"] = {r[0]: r[1] for r in rows}
    return out
