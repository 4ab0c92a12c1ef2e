"""Resends to non-clickers: a resend campaign whose audience is its parent's non-clickers (or the
non-openers of one of the parent's links), each recipient keeping the code they were sent.

A reused code belongs to the parent's link, so the counter counts its clicks there, on the
original campaign, as it counts every resend's reused links (docs/counting.md). What the resend
itself brought is read against its audience: `resend_audience` keeps, for each recipient, what
the counter held for them (`recipient_clicks`) on the links its message carries, when the resend
was made; the resend's clicks are the audience's clicks on those codes since (now minus then),
its clickers the audience members with more human clicks than then, its non-clickers the rest
of the audience, exactly. A tap on one of those codes cannot tell which SMS it came from; the
audience had not clicked before, so a click since is the resend's.

Recipients are carried as they are stored in `codes.recipient_id` (whatever minting stored: an
id, or its pseudonym): a resend mints nothing, it reads the codes the recipients already have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

from shared import clickers as lists
from shared import db
from shared.clickers import Clicker, NonClicker
from shared.recipients import RecipientVault

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class Resend:
    """What a resend to non-clickers was made of."""

    campaign_id: int
    parent_id: int
    link_id: int | None
    """The parent's link whose non-openers it went to; None: the parent's non-clickers."""
    template: str
    slot_types: list[str] | None
    values: list[str]
    var_limit: int | None
    urls: list[str]
    """The links in the values, as the messages carry them."""
    links: list[int]
    """The parent's (or an ancestor's) link each of `urls` is, in the same order."""
    audience: int


@dataclass(frozen=True, slots=True)
class ResendCounts:
    """A resend's own numbers: its audience's clicks on its codes since it was made."""

    parent_id: int
    link_id: int | None
    audience: int
    """Recipients it was sent to."""
    clicked: int
    """Recipients of the audience with a human click since: its unique clicks."""
    total: int
    """Human clicks of the audience since."""
    bots: int
    after_expiry: int


_COLUMNS = (
    'campaign_id, parent_id, link_id, template, slot_types, slot_values AS "values", var_limit,'
    " message_urls AS urls, message_links AS links, audience"
)
"""The columns of a `Resend`, named as its fields."""
_SUMS = """(SELECT coalesce(sum(k.clicks), 0)::bigint AS clicks,
                  coalesce(sum(k.bot_clicks), 0)::bigint AS bots,
                  coalesce(sum(k.after_expiry), 0)::bigint AS expired
           FROM recipient_clicks k
           WHERE k.link_id = ANY({links}::bigint[]) AND k.recipient_id = {recipient})"""
"""SQL: one recipient's counts on `links` (an array of link ids)."""


async def create_audience(
    conn: asyncpg.Connection, resend: Resend, source: str, source_id: int, source_links: list[int]
) -> int:
    """Store the resend and its audience: the recipients `source` lists (the SQL of a list of
    non-clickers, parameters as `clickers.non_clickers_sql`'s: $3 `source_id`, $4
    `source_links`) who hold a code on every link the messages carry, with their counts on
    those links now. Returns the audience's size. Runs in the caller's transaction."""
    inserted = await conn.fetchval(
        f"""
        WITH chosen AS (
            INSERT INTO resend_audience (campaign_id, recipient_id, clicks_before, bots_before,
                                         expired_before)
            SELECT $5, n.r, s.clicks, s.bots, s.expired
            FROM ({source}) n(r)
            CROSS JOIN LATERAL {_SUMS.format(links="$6", recipient="n.r")} s
            WHERE NOT EXISTS (
                SELECT 1 FROM unnest($6::bigint[]) m(link_id)
                WHERE NOT EXISTS (SELECT 1 FROM codes c
                                  WHERE c.link_id = m.link_id AND c.recipient_id = n.r)
            )
            RETURNING 1
        )
        SELECT count(*) FROM chosen
        """,
        "",
        None,
        source_id,
        source_links,
        resend.campaign_id,
        resend.links,
    )
    audience = int(inserted)
    await conn.execute(
        "INSERT INTO resends (campaign_id, parent_id, link_id, template, slot_types, slot_values,"
        " var_limit, message_urls, message_links, audience)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        resend.campaign_id,
        resend.parent_id,
        resend.link_id,
        resend.template,
        resend.slot_types,
        resend.values,
        resend.var_limit,
        resend.urls,
        resend.links,
        audience,
    )
    return audience


async def get_resend(conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int) -> Resend | None:
    """The resend to non-clickers that campaign `campaign_id` is, or None (another campaign)."""
    found = await db.fetch_all(
        conn, Resend, f"SELECT {_COLUMNS} FROM resends WHERE campaign_id = $1", campaign_id
    )
    return found[0] if found else None


def _since(resend: str, links: str) -> str:
    """SQL: every audience row of the resend `resend` (a parameter) with its counts on the
    messages' `links` (a parameter) since the resend was made (columns r, clicks, bots,
    expired): one index lookup per recipient, for the non-clickers' walk in recipient order."""
    return f"""
        SELECT a.recipient_id AS r, greatest(s.clicks - a.clicks_before, 0) AS clicks,
               greatest(s.bots - a.bots_before, 0) AS bots,
               greatest(s.expired - a.expired_before, 0) AS expired
        FROM resend_audience a
        CROSS JOIN LATERAL {_SUMS.format(links=links, recipient="a.recipient_id")} s
        WHERE a.campaign_id = {resend}"""


def _tapped(resend: str, links: str, where: str = "") -> str:
    """SQL: the audience members of the resend `resend` with a tap on the messages' `links`
    (columns r, clicks, bots, expired since the resend, first_click, last_click). Driven by
    those links' `recipient_clicks` rows (the people who tapped, few) rather than by the
    audience (up to every recipient): a member without a row had none before either."""
    return f"""
        SELECT a.recipient_id AS r, greatest(sum(k.clicks) - a.clicks_before, 0) AS clicks,
               greatest(sum(k.bot_clicks) - a.bots_before, 0) AS bots,
               greatest(sum(k.after_expiry) - a.expired_before, 0) AS expired,
               min(k.first_click) AS first_click, max(k.last_click) AS last_click
        FROM recipient_clicks k
        JOIN resend_audience a ON a.campaign_id = {resend} AND a.recipient_id = k.recipient_id
        WHERE k.link_id = ANY({links}::bigint[]) {where}
        GROUP BY a.recipient_id, a.clicks_before, a.bots_before, a.expired_before"""


async def counts(conn: asyncpg.Connection | asyncpg.Pool, resend: Resend) -> ResendCounts:
    """The resend's own numbers, now."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE clicks > 0), coalesce(sum(clicks), 0)::bigint,"
        " coalesce(sum(bots), 0)::bigint, coalesce(sum(expired), 0)::bigint"
        f" FROM ({_tapped('$1', '$2')}) x",
        resend.campaign_id,
        resend.links,
    )
    return ResendCounts(resend.parent_id, resend.link_id, resend.audience, *row)


def clickers_sql() -> str:
    """SQL of a resend's clickers after $1, at most $2 (NULL: all), in recipient order; $3 is
    the resend, $4 its messages' links. Columns as `Clicker`: clicks, bot hits and taps after
    expiry on those links since the resend; the first and last click on them."""
    return (
        "SELECT r, clicks::bigint, bots::bigint, expired::bigint, first_click, last_click"
        f" FROM ({_tapped('$3', '$4', 'AND k.recipient_id > $1')}) x"
        " WHERE clicks > 0 ORDER BY r LIMIT $2"
    )


def non_clickers_sql() -> str:
    """SQL of a resend's audience without a human click since, after $1, at most $2, in
    recipient order; $3 is the resend, $4 its messages' links."""
    return (
        f"SELECT r FROM ({_since('$3', '$4')} AND a.recipient_id > $1) x"
        " WHERE clicks <= 0 ORDER BY r LIMIT $2"
    )


async def clickers(
    conn: Db, vault: RecipientVault, resend: Resend, *, after: str = "", limit: int = 100
) -> list[Clicker]:
    """A page of the resend's clickers, in pseudonym order, their ids opened with `vault`."""
    return await lists.clicker_page(conn, vault, clickers_sql(), after, limit, *_keys(resend))


async def non_clickers(
    conn: Db, vault: RecipientVault, resend: Resend, *, after: str = "", limit: int = 100
) -> list[NonClicker]:
    """A page of the resend's audience without a click since, in pseudonym order."""
    sql = non_clickers_sql()
    return await lists.non_clicker_page(conn, vault, sql, after, limit, *_keys(resend))


def _keys(resend: Resend) -> tuple[int, list[int]]:
    """The list queries' $3 and $4: the resend and its messages' links."""
    return resend.campaign_id, resend.links


async def message_codes(
    conn: asyncpg.Connection | asyncpg.Pool,
    vault: RecipientVault,
    resend: Resend,
    *,
    after: str,
    limit: int,
) -> list[tuple[str, str | None, list[str]]]:
    """A page of the audience, in pseudonym order: each recipient's pseudonym, id (opened with
    `vault`; None once erased) and code on each of the messages' links (`resend.links`, in
    order; fewer once erased)."""
    rows = await conn.fetch(
        """
        SELECT a.recipient_id, s.sealed_id,
               ARRAY(SELECT c.code FROM unnest($4::bigint[]) WITH ORDINALITY m(link_id, i)
                     JOIN codes c ON c.link_id = m.link_id AND c.recipient_id = a.recipient_id
                     ORDER BY m.i)
        FROM resend_audience a
        LEFT JOIN recipients s ON s.org_id = $5 AND s.pseudonym = a.recipient_id
        WHERE a.campaign_id = $1 AND a.recipient_id > $2
        ORDER BY a.recipient_id LIMIT $3
        """,
        resend.campaign_id,
        after,
        limit,
        resend.links,
        vault.org_id,
    )
    return [(r[0], None if r[1] is None else vault.open(r[0], r[1]), list(r[2])) for r in rows]


async def counts_of(
    conn: asyncpg.Connection | asyncpg.Pool, ids: list[int]
) -> dict[int, ResendCounts]:
    """The own numbers of those of the campaigns `ids` that are resends to non-clickers."""
    found = await db.fetch_all(
        conn, Resend, f"SELECT {_COLUMNS} FROM resends WHERE campaign_id = ANY($1::bigint[])", ids
    )
    return {r.campaign_id: await counts(conn, r) for r in found}
