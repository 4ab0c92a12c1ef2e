"""Who a campaign or a link was sent to, who clicked and who did not: the one module that reads
recipient ids for reports and resends.

A recipient is one the organisation minted a code for (`codes.recipient_id`, an opaque string:
a customer id, a phone number, or the pseudonym that stands for one). A recipient *clicked* a
scope when the counter holds a human click of theirs on one of its links while it was live
(`recipient_clicks.clicks > 0`); bot hits (a phone's link preview) and taps after expiry are
shown beside the clicks but make no clicker. The non-clickers are the recipients minus the
clickers, exactly, and both lists are pages in the order of the recipient ids (keyset: `after`
is the last id of the previous page).

Both lists are fast for a million recipients because each is one walk down an index in
recipient order, stopped at the page's end: a campaign's recipients are the merge of its links'
(link_id, recipient_id) code indexes (a MergeAppend of one index scan per link), and each is
looked up in recipient_clicks by (campaign_id or link_id, recipient_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

MAX_MERGED_LINKS = 200
"""Links merged in recipient order, one index scan each; a campaign with more is sorted."""

Scope = tuple[str, int]
"""(`campaign` or `link`, its id)."""


@dataclass(frozen=True, slots=True)
class Clicker:
    """A recipient who clicked, and how."""

    recipient: str
    clicks: int
    """Human clicks on the live links of the scope."""
    bot_clicks: int
    """Bot hits on their codes (link previews, scanners)."""
    after_expiry: int
    """Their taps after the link expired."""
    first_click: datetime
    last_click: datetime


async def scope_links(conn: asyncpg.Connection | asyncpg.Pool, scope: Scope) -> list[int]:
    """The links whose codes make the scope's recipients: a campaign's links, or the link."""
    kind, scope_id = scope
    if kind == "link":
        return [scope_id]
    rows = await conn.fetch("SELECT id FROM links WHERE campaign_id = $1 ORDER BY id", scope_id)
    return [r[0] for r in rows]


def _clicked(scope: Scope, recipient: str) -> str:
    """SQL: the recipient `recipient` (an expression) clicked the scope (its id is $3)."""
    column = "campaign_id" if scope[0] == "campaign" else "link_id"
    return (
        f"EXISTS (SELECT 1 FROM recipient_clicks k WHERE k.{column} = $3"
        f" AND k.recipient_id = {recipient} AND k.clicks > 0)"
    )


def non_clickers_sql(scope: Scope, link_count: int) -> str:
    """SQL of the scope's non-clickers after $1 (a recipient id; '' for the first page), at most
    $2 (NULL: all), in recipient order; $3 is the scope's id, $4 its links (an array)."""
    if link_count <= MAX_MERGED_LINKS:
        # one ordered index scan per link, merged (MergeAppend), so a page reads only its rows
        recipients = " UNION ALL ".join(
            f"SELECT recipient_id AS r FROM codes WHERE link_id = ($4::bigint[])[{i + 1}]"
            " AND recipient_id > $1"
            for i in range(max(link_count, 1))
        )
    else:
        recipients = (
            "SELECT recipient_id AS r FROM codes WHERE link_id = ANY($4::bigint[])"
            " AND recipient_id > $1"
        )
    return (
        f"SELECT DISTINCT u.r FROM ({recipients} ORDER BY 1) u"
        f" WHERE u.r IS NOT NULL AND NOT {_clicked(scope, 'u.r')}"
        " ORDER BY u.r LIMIT $2"
    )


def clickers_sql(scope: Scope) -> str:
    """SQL of the scope's clickers after $1, at most $2 (NULL: all), in recipient order; $3 is
    the scope's id. Columns as `Clicker`."""
    column = "campaign_id" if scope[0] == "campaign" else "link_id"
    return (
        "SELECT recipient_id, sum(clicks)::bigint, sum(bot_clicks)::bigint,"
        " sum(after_expiry)::bigint, min(first_click), max(last_click)"
        f" FROM recipient_clicks WHERE {column} = $3 AND recipient_id > $1"
        " GROUP BY recipient_id HAVING sum(clicks) > 0 ORDER BY recipient_id LIMIT $2"
    )


async def non_clickers(
    conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, *, after: str = "", limit: int = 100
) -> list[str]:
    """A page of the scope's recipients without a click, in recipient order."""
    links = await scope_links(conn, scope)
    if not links:
        return []
    rows = await conn.fetch(non_clickers_sql(scope, len(links)), after, limit, scope[1], links)
    return [r[0] for r in rows]


async def clickers(
    conn: asyncpg.Connection | asyncpg.Pool, scope: Scope, *, after: str = "", limit: int = 100
) -> list[Clicker]:
    """A page of the scope's clickers, in recipient order."""
    rows = await conn.fetch(clickers_sql(scope), after, limit, scope[1])
    return [Clicker(*r) for r in rows]


SPREADSHEET_SAFE = (
    "CASE WHEN {0} ~ '^[=@\\t\\r]' OR ({0} ~ '^[+-]' AND {0} !~ '^[+-][0-9 ]*$')"
    " THEN '''' || {0} ELSE {0} END"
)
"""SQL: a recipient id as a CSV cell that no spreadsheet reads as a formula (a leading quote
before =, @, a tab, a return, or a + or - not starting a plain number such as +919800000001)."""


_ISO = """to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
"""SQL: a time as RFC 3339 in UTC, whatever the session's time zone."""


def csv_sql(scope: Scope, which: str, link_count: int) -> str:
    """The COPY query of the whole list (`clickers` or `non_clickers`) as CSV rows, parameters as
    the page queries' with $2 NULL."""
    if which == "clickers":
        cell = SPREADSHEET_SAFE.format("recipient_id")
        inner = clickers_sql(scope)
        return (
            f"SELECT {cell} AS recipient, clicks, bot_clicks, after_expiry, {_ISO.format('f')}"
            f" AS first_click, {_ISO.format('l')} AS last_click FROM ({inner})"
            " c(recipient_id, clicks, bot_clicks, after_expiry, f, l)"
        )
    cell = SPREADSHEET_SAFE.format("r")
    return f"SELECT {cell} AS recipient FROM ({non_clickers_sql(scope, link_count)}) n(r)"
