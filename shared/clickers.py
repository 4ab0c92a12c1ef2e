"""Who a campaign or a link was sent to, who clicked and who did not: the one module that reads
recipients for reports and resends.

A recipient is one the organisation minted a code for. Codes and the per-recipient clicks hold
its pseudonym (`shared.recipients`), never its id; the lists show the sender's id, opened from
its sealed copy in `recipients` with the keys of the organisation that owns the scope (so only
that organisation's), or None once the recipient was erased (its rows are counted still, under
a random pseudonym that leads to nobody). A recipient *clicked* a scope when the counter holds a
human click of theirs on one of its links while it was live (`recipient_clicks.clicks > 0`); bot
hits (a phone's link preview) and taps after expiry are shown beside the clicks but make no
clicker. The non-clickers are the recipients minus the clickers, exactly, and both lists are
pages in the order of the pseudonyms (keyset: `after` is the last pseudonym of the previous
page), which says nothing about the ids.

Both lists are fast for a million recipients because each is one walk down an index in
pseudonym order, stopped at the page's end: a campaign's recipients are the merge of its links'
(link_id, recipient_id) code indexes (a MergeAppend of one index scan per link), each looked up
in recipient_clicks by (campaign_id or link_id, recipient_id) and in recipients by its key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.recipients import RecipientVault

MAX_MERGED_LINKS = 200
"""Links merged in recipient order, one index scan each; a campaign with more is sorted."""

Scope = tuple[str, int]
"""(`campaign` or `link`, its id)."""


@dataclass(frozen=True, slots=True)
class Clicker:
    """A recipient who clicked, and how."""

    recipient: str | None
    """The sender's id; None once erased."""
    pseudonym: str
    clicks: int
    """Human clicks on the live links of the scope."""
    bot_clicks: int
    """Bot hits on their codes (link previews, scanners)."""
    after_expiry: int
    """Their taps after the link expired."""
    first_click: datetime
    last_click: datetime


@dataclass(frozen=True, slots=True)
class NonClicker:
    """A recipient without a click."""

    recipient: str | None
    """The sender's id; None once erased."""
    pseudonym: str


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
    """SQL of the scope's non-clickers' pseudonyms after $1 (a pseudonym; '' for the first page),
    at most $2, in pseudonym order; $3 is the scope's id, $4 its links (an array)."""
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
    """SQL of the scope's clickers after $1 (a pseudonym), at most $2, in pseudonym order; $3 is
    the scope's id. Columns as `Clicker` from its pseudonym on."""
    column = "campaign_id" if scope[0] == "campaign" else "link_id"
    return (
        "SELECT recipient_id, sum(clicks)::bigint, sum(bot_clicks)::bigint,"
        " sum(after_expiry)::bigint, min(first_click), max(last_click)"
        f" FROM recipient_clicks WHERE {column} = $3 AND recipient_id > $1"
        " GROUP BY recipient_id HAVING sum(clicks) > 0 ORDER BY recipient_id LIMIT $2"
    )


def _with_ids(inner: str, columns: str, org: int, shown: str = "q.*") -> str:
    """SQL: the rows of `inner` (pseudonym first, named as `columns`; `shown` of them) with the
    sealed id of each pseudonym of the organisation `$org` (NULL once erased), in pseudonym
    order."""
    # A subquery per row: one probe of the primary key each, where a join would hash every
    # recipient of the organisation for a page (120 ms a page of 5,000 among 300,000).
    return (
        f"SELECT {shown}, (SELECT s.sealed_id FROM recipients s WHERE s.org_id = ${org}"
        f" AND s.pseudonym = q.p) FROM ({inner}) q({columns}) ORDER BY q.p"
    )


def _open(vault: RecipientVault, pseudonym: str, sealed: bytes | None) -> str | None:
    return None if sealed is None else vault.open(pseudonym, sealed)


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    vault: RecipientVault,
    scope: Scope,
    which: str,
    *,
    after: str = "",
    limit: int = 100,
    links: list[int] | None = None,
) -> list[Clicker] | list[NonClicker]:
    """A page of the scope's `clickers` or `non_clickers` (`which`: its recipients without a
    click), in pseudonym order; the scope belongs to the organisation of `vault`. `links`: the
    scope's (`scope_links`), when known."""
    if which == "clickers":
        return await clicker_page(conn, vault, clickers_sql(scope), after, limit, scope[1])
    if links is None:
        links = await scope_links(conn, scope)
    if not links:
        return []
    sql = non_clickers_sql(scope, len(links))
    return await non_clicker_page(conn, vault, sql, after, limit, scope[1], links)


async def non_clicker_page(
    conn: asyncpg.Connection | asyncpg.Pool, vault: RecipientVault, sql: str, *args: object
) -> list[NonClicker]:
    """The rows of `sql` (a list of pseudonyms, parameters `args`) as `NonClicker`s, their ids
    opened with `vault` (the organisation's whose scope it is)."""
    rows = await conn.fetch(_with_ids(sql, "p", len(args) + 1), *args, vault.org_id)
    return [NonClicker(_open(vault, r[0], r[1]), r[0]) for r in rows]


async def clicker_page(
    conn: asyncpg.Connection | asyncpg.Pool, vault: RecipientVault, sql: str, *args: object
) -> list[Clicker]:
    """The rows of `sql` (`Clicker`'s columns from its pseudonym on, parameters `args`) as
    `Clicker`s, their ids opened with `vault`."""
    inner = _with_ids(sql, "p, clicks, bots, expiry, f, l", len(args) + 1)
    rows = await conn.fetch(inner, *args, vault.org_id)
    return [Clicker(_open(vault, r[0], r[6]), *r[:6]) for r in rows]


def spreadsheet_safe(text: str) -> str:
    """A recipient id as a CSV cell that no spreadsheet reads as a formula: a leading quote
    before =, @, a tab, a return, or a + or - not starting a plain number such as
    +919800000001 (which stays as it is)."""
    if text and (text[0] in "=@\t\r" or (text[0] in "+-" and not _PLAIN_NUMBER.fullmatch(text))):
        return "'" + text
    return text


_PLAIN_NUMBER = re.compile(r"[+-][0-9 ]*")


_ISO = """to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
"""SQL: a time as RFC 3339 in UTC, whatever the session's time zone."""


def csv_sql(which: str, sql: str, args: int) -> str:
    """The COPY query of a whole list: the rows of `sql` (a list query of `which`, `clickers` or
    `non_clickers`, taking `args` parameters; $2, its limit, NULL) as the pseudonym, (clickers)
    the counts and times as text, and the sealed id last; the organisation is parameter
    `args + 1`."""
    if which == "clickers":
        shown = f"q.p, q.clicks, q.bots, q.expiry, {_ISO.format('q.f')}, {_ISO.format('q.l')}"
        return _with_ids(sql, "p, clicks, bots, expiry, f, l", args + 1, shown)
    return _with_ids(sql, "p", args + 1, "q.p")


def csv_lines(vault: RecipientVault, lines: list[bytes]) -> list[list[str]]:
    """Rows of the CSV list from lines of `csv_sql`'s COPY output (CSV: no field holds a comma
    or a quote): the sender's id first (spreadsheet-safe; empty once erased), the pseudonym,
    then the rest as Postgres wrote it."""
    rows: list[list[str]] = []
    for line in lines:
        if not line:
            continue
        pseudonym, *rest = line.decode().split(",")
        sealed = rest.pop()
        shown = "" if not sealed else vault.open(pseudonym, bytes.fromhex(sealed[2:]))
        rows.append([spreadsheet_safe(shown), pseudonym, *rest])
    return rows
