"""Click reports of a link, a campaign (with its resends and recurrences) and the organisation.

Every report carries `as_of` (when its reads began), the counter's `lag` (clicks published but
not yet counted, see `services.api.freshness`), the `window` it covers, the live all-time
`totals` (Redis, or Postgres when Redis cannot answer: `totals_source`), the window's counts
`in_window`, breakdowns and a `series` of buckets. Counting rules: `services.api.insights`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from services.api.auth import one_turn, require_org
from services.api.body import path_id
from services.api.context import END_OFFSETS, POOL, REDIS, SETTINGS, UNIQUES
from services.api.errors import dumps
from services.api.freshness import counter_lag
from services.api.insights import (
    Tally,
    WindowCounts,
    campaigns_between,
    live_totals,
    org_totals,
    window_counts,
)
from services.api.window import HOUR, Window, floor_quarter, read_window
from shared import resends
from shared.campaigns import COLUMNS as CAMPAIGN_COLUMNS
from shared.campaigns import Campaign, get_campaign
from shared.errors import InvalidInputError
from shared.links import get_link

WINDOW_PARAMS = frozenset({"from", "to", "bucket", "tz"})
MAX_LINKS = 1000
"""Links listed in a campaign report's `by_link`."""
MAX_FAMILY = 200
"""Campaigns listed in a campaign report's `family`."""
FIRST_HOURS = 24
"""The family's comparison: each campaign's counts in its first 24 hours (from the quarter hour
it was created in)."""
MAX_CAMPAIGNS = 500
"""Campaigns listed (newest first) in the organisation report."""


@dataclass(frozen=True, slots=True)
class Subject:
    """What a request reports on: a link, a campaign or the organisation, checked to be the
    caller's own, and the window asked for."""

    scope: str
    """`link`, `campaign` or `org`."""
    id: int
    label: str
    """For people: `link 7`, the campaign's name, `all campaigns`."""
    window: Window
    now: datetime
    """When the request was read: the report's `as_of`."""


async def subject_of(request: web.Request) -> Subject:
    """The caller's link or campaign named in the path (another organisation's is 404), or the
    caller's organisation when the path names neither, with the query's window."""
    org_id = await require_org(request)
    now = datetime.now(UTC)
    pool = request.app[POOL]
    window = await window_of(request, org_id, now)
    if "link_id" in request.match_info:
        link = await get_link(pool, org_id, path_id(request, "link_id"))
        return Subject("link", link.id, f"link {link.id}", window, now)
    if "campaign_id" in request.match_info:
        campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
        return Subject("campaign", campaign.id, campaign.name, window, now)
    return Subject("org", org_id, "all campaigns", window, now)


async def window_of(request: web.Request, org_id: int, now: datetime) -> Window:
    """The report window of the query, in the organisation's time zone unless `tz` names another;
    an unknown parameter is refused (a typo would otherwise silently widen the report)."""
    unknown = sorted(set(request.query) - WINDOW_PARAMS)
    if unknown:
        raise InvalidInputError(
            f"unknown query parameter(s): {', '.join(unknown)[:200]};"
            f" expected some of {', '.join(sorted(WINDOW_PARAMS))}",
            code="unknown_parameter",
        )
    zone = await request.app[POOL].fetchval("SELECT time_zone FROM orgs WHERE id = $1", org_id)
    return read_window(request.query, now=now, default_tz=zone or "UTC")


async def envelope(request: web.Request, window: Window, now: datetime) -> dict[str, Any]:
    """The freshness and window fields every report starts with."""
    app = request.app
    lag = await counter_lag(app[POOL], app[END_OFFSETS], app[SETTINGS])
    return {"as_of": now, "lag": lag.as_dict(), "window": window.as_dict()}


def series_items(window: Window, rows: list[tuple[datetime, Tally]]) -> list[dict[str, Any]]:
    """The series as the reports show it: each bucket's start in the window's time zone."""
    return [{"start": window.local(start).isoformat(), **t.as_dict()} for start, t in rows]


def grouped(name: str, rows: list[tuple[Any, Tally]]) -> list[dict[str, Any]]:
    return [{name: key, **t.as_dict()} for key, t in rows]


async def report_body(
    request: web.Request,
    window: Window,
    now: datetime,
    subject: dict[str, Any],
    counted: WindowCounts,
    **parts: Any,
) -> dict[str, Any]:
    """What every report says, in this order: its freshness and window (`envelope`), what it
    reports on with its totals (`subject`), the window's counts and their split by channel,
    the report's own `parts`, and the series."""
    return {
        **await envelope(request, window, now),
        **subject,
        "in_window": counted.in_window.as_dict(),
        "by_channel": grouped("channel", counted.groups["channel"]),
        **parts,
        "series": series_items(window, counted.series),
    }


@one_turn
async def link_report(request: web.Request) -> web.Response:
    """One link: live totals, the window's series and its split by channel."""
    org_id = await require_org(request)
    now = datetime.now(UTC)
    window = await window_of(request, org_id, now)
    pool = request.app[POOL]
    link = await get_link(pool, org_id, path_id(request, "link_id"))
    totals, source = await live_totals(request.app[REDIS], pool, "link", [link.id])
    counted = await window_counts(
        pool, "link", link.id, window, by=["channel"], cache=request.app[UNIQUES]
    )
    subject = {"link": link, "totals": totals[link.id].as_dict(), "totals_source": source}
    body = await report_body(request, window, now, subject, counted)
    return web.json_response(body, dumps=dumps)


@one_turn
async def campaign_report(request: web.Request) -> web.Response:
    """One campaign: live totals, the window's series, its split by channel and by link, and
    every campaign of its family (the original, its resends and recurrences) side by side: all
    time, in the window, and in the first 24 hours after each was created."""
    org_id = await require_org(request)
    now = datetime.now(UTC)
    window = await window_of(request, org_id, now)
    pool = request.app[POOL]
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    family = await _family(pool, campaign)
    ids = [c.id for c in family]
    others = [c for c in family if c.id != campaign.id]
    uniques = request.app[UNIQUES]
    totals_of, counted, others_in_window, first_day = await asyncio.gather(
        live_totals(request.app[REDIS], pool, "campaign", ids),
        window_counts(pool, "campaign", campaign.id, window, by=["channel", "link"], cache=uniques),
        campaigns_between(
            pool,
            [c.id for c in others],
            [window.start] * len(others),
            [window.end] * len(others),
            cache=uniques,
        ),
        campaigns_between(
            pool,
            ids,
            [floor_quarter(c.created_at) for c in family],
            [floor_quarter(c.created_at) + FIRST_HOURS * HOUR for c in family],
            cache=uniques,
        ),
    )
    totals, source = totals_of
    in_window = {**others_in_window, campaign.id: counted.in_window}
    resent = await resends.counts_of(pool, ids)
    subject = {
        "campaign": campaign,
        "totals": totals[campaign.id].as_dict(),
        "totals_source": source,
    }
    body = await report_body(
        request,
        window,
        now,
        subject,
        counted,
        by_link=await _by_link(request, campaign, counted),
        family=[
            {
                "campaign": c,
                "totals": totals[c.id].as_dict(),
                "in_window": in_window[c.id].as_dict(),
                "first_24h": first_day[c.id].as_dict(),
                "resend": resent.get(c.id),
            }
            for c in family
        ],
        resend=resent.get(campaign.id),
    )
    return web.json_response(body, dumps=dumps)


@one_turn
async def org_report(request: web.Request) -> web.Response:
    """The organisation: totals over every link, the window's series, its split by channel and
    by campaign kind, and its newest campaigns with their live totals."""
    org_id = await require_org(request)
    now = datetime.now(UTC)
    window = await window_of(request, org_id, now)
    pool = request.app[POOL]
    listed = [
        Campaign(**dict(r))
        for r in await pool.fetch(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE org_id = $1 ORDER BY id DESC LIMIT $2",
            org_id,
            MAX_CAMPAIGNS + 1,
        )
    ]
    shown = listed[:MAX_CAMPAIGNS]
    uniques = request.app[UNIQUES]
    (totals, source), counted, org_all_time = await asyncio.gather(
        live_totals(request.app[REDIS], pool, "campaign", [c.id for c in shown]),
        window_counts(pool, "org", org_id, window, by=["channel", "kind"], cache=uniques),
        org_totals(pool, org_id, cache=uniques),
    )
    body = await report_body(
        request,
        window,
        now,
        {"org_id": org_id, "totals": org_all_time.as_dict()},
        counted,
        by_kind=grouped("kind", counted.groups["kind"]),
        campaigns=[{"campaign": c, "totals": totals[c.id].as_dict()} for c in shown],
        campaigns_source=source,
        campaigns_truncated=len(listed) > MAX_CAMPAIGNS,
    )
    return web.json_response(body, dumps=dumps)


async def _family(pool: asyncpg.Pool, campaign: Campaign) -> list[Campaign]:
    """The campaign's family: its root ancestor and every descendant, oldest first."""
    rows = await pool.fetch(
        f"""
        WITH RECURSIVE up (id, parent_id, depth) AS (
            SELECT id, parent_id, 0 FROM campaigns WHERE id = $1
            UNION ALL
            SELECT c.id, c.parent_id, up.depth + 1 FROM campaigns c JOIN up ON c.id = up.parent_id
            WHERE up.depth < 100
        ),
        down (id, depth) AS (
            SELECT id, 0 FROM (SELECT id FROM up ORDER BY depth DESC LIMIT 1) root
            UNION ALL
            SELECT c.id, down.depth + 1 FROM campaigns c JOIN down ON c.parent_id = down.id
            WHERE down.depth < 100
        )
        SELECT {CAMPAIGN_COLUMNS} FROM campaigns
        WHERE id IN (SELECT id FROM down) AND org_id = $2
        ORDER BY created_at, id LIMIT $3
        """,
        campaign.id,
        campaign.org_id,
        MAX_FAMILY,
    )
    found = [Campaign(**dict(r)) for r in rows]
    return found if any(c.id == campaign.id for c in found) else [campaign, *found]


async def _by_link(request: web.Request, campaign: Campaign, counted: WindowCounts) -> list[Any]:
    """Every link of the campaign (up to `MAX_LINKS`): its window counts and live totals."""
    pool = request.app[POOL]
    links = await pool.fetch(
        "SELECT id, destination FROM links WHERE campaign_id = $1 ORDER BY id LIMIT $2",
        campaign.id,
        MAX_LINKS,
    )
    in_window: Mapping[Any, Tally] = dict(counted.groups["link"])
    totals, _ = await live_totals(request.app[REDIS], pool, "link", [r["id"] for r in links])
    items = [
        {
            "link_id": r["id"],
            "destination": r["destination"],
            **in_window.get(r["id"], Tally()).as_dict(),
            "totals": totals[r["id"]].as_dict(),
        }
        for r in links
    ]
    return sorted(items, key=lambda i: (-i["total"], -i["bots"], i["link_id"]))
