"""Erasure of a recipient, purge of an organisation, and the pseudonyms of data from before them.

**Erasing a recipient** (`erase_recipients`) deletes its `recipients` row (the sealed id) and
replaces its pseudonym everywhere else (codes, visitor rows) by a fresh random one of the same
shape. Counts do not move: the visitor rows keep their number and their days, only their name
changes, so a later tap on the same code is still the same visitor. And nothing left leads back
to the person: the organisation, which can compute a number's pseudonym, finds no row with it.

Events already on the topic carry the old pseudonym. The erasure writes a tombstone (old ->
new), and the counter counts such late events for the new name (`services.counter.tombstones`).
The tombstone is written first in the erasure's transaction and the counter reads the
tombstones first in each of its transactions, under a table lock taken in modes that exclude
each other: a batch is either counted before the erasure renamed what it wrote, or sees the
tombstone. The tombstone holds the old pseudonym for as long as the topic may still hold it
(`DEDUP_RETENTION_DAYS`), then `prune_tombstones` deletes it.

**Purging an organisation** (`purge_org`) deletes every row of it (each table with an `org_id`,
`link_id` or `campaign_id` of the organisation, the daily rows of its links and campaigns, then
its links, campaigns and the organisation) and leaves a tombstone, so the counter drops its late
events instead of counting them into rows that would come back. `forget_in_redis` then deletes
its Redis keys (counters, caches) by name, never by a wildcard over everyone's keys.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg
import redis.asyncio as aioredis

from shared import audit
from shared.link_cache import invalidate_codes, invalidate_link
from shared.recipients import RecipientKeys, RecipientVault
from shared.redis_client import errors as redis_errors

_TOMBSTONE_LOCK = "LOCK TABLE privacy_tombstones IN ROW EXCLUSIVE MODE"
"""First in an erasure or a purge: waits for the counting transactions in flight (they hold
SHARE) and makes the next ones wait for this commit (migration 0080)."""
_CORE = ("orgs", "campaigns", "links", "privacy_tombstones", "operator_audit")
"""Tables `purge_org` empties itself, last (the others refer to them), or not at all: the
operators' audit trail outlives the organisations it names (migration 0081)."""
_SCOPED = {
    "daily_counters": ("link", "campaign"),
    "daily_visitors": ("l", "c"),
    "visitor_scope_epochs": ("l", "c"),
}
"""Tables keyed by (scope, scope_id): how each spells a link and a campaign."""


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure (or the pseudonymisation of ids stored as given) did."""

    erased: int
    """Recipients found and erased (an id never seen, or erased before, is not counted)."""
    codes: list[str]
    """Their codes, whose cached entries must be dropped."""


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge deleted."""

    org_id: int
    rows: dict[str, int]
    """Rows deleted per table."""
    link_ids: list[int] = field(default_factory=list)
    campaign_ids: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)


async def erase_recipients(
    conn: asyncpg.Connection, vault: RecipientVault, recipients: Sequence[str], *, operator: str
) -> Erased:
    """Erase the organisation's recipients named by the sender's ids, in one transaction, and
    record it in the audit trail as done by `operator` (how many, never whom)."""
    old = sorted({vault.pseudonym(r) for r in recipients})
    async with conn.transaction():
        await conn.execute(_TOMBSTONE_LOCK)
        links = await _ids(conn, "SELECT id FROM links WHERE org_id = $1", vault.org_id)
        known = await conn.fetch(
            "DELETE FROM recipients WHERE org_id = $1 AND pseudonym = ANY($2::text[])"
            " RETURNING pseudonym",
            vault.org_id,
            old,
        )
        with_codes = await conn.fetch(
            "SELECT DISTINCT recipient_id FROM codes"
            " WHERE link_id = ANY($1::bigint[]) AND recipient_id = ANY($2::text[])",
            links,
            old,
        )
        found = sorted({r[0] for r in known} | {r[0] for r in with_codes})
        if not found:
            return Erased(0, [])
        new = [secrets.token_hex(16) for _ in found]  # the shape of a pseudonym, of nobody
        campaigns = await _ids(conn, "SELECT id FROM campaigns WHERE org_id = $1", vault.org_id)
        codes = await _rename(conn, links, campaigns, found, new)
        await conn.execute(
            "INSERT INTO privacy_tombstones (org_id, pseudonym, replacement)"
            " SELECT $1, old, new FROM unnest($2::text[], $3::text[]) AS m (old, new)",
            vault.org_id,
            found,
            new,
        )
        await audit.record(
            conn,
            operator=operator,
            action="recipients.erased",
            org_id=vault.org_id,
            erased=len(found),
            codes=len(codes),
        )
    return Erased(len(found), codes)


async def purge_org(
    conn: asyncpg.Connection, org_id: int, *, operator: str, ticket: str | None = None
) -> Purged:
    """Delete every row of organisation `org_id`, in one transaction, and leave its tombstone;
    the audit trail records it (`operator`, `ticket`), with the rows deleted per table."""
    rows: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute(_TOMBSTONE_LOCK)
        links = await _ids(conn, "SELECT id FROM links WHERE org_id = $1", org_id)
        campaigns = await _ids(conn, "SELECT id FROM campaigns WHERE org_id = $1", org_id)
        codes = [
            r["code"]
            for r in await conn.fetch(
                "SELECT code FROM codes WHERE link_id = ANY($1::bigint[])", links
            )
        ]
        owners = {"org_id": org_id, "link_id": links, "campaign_id": campaigns}
        for table, columns in await _tables_of_orgs(conn):
            if table in _CORE:
                continue
            if table in _SCOPED:
                link_scope, campaign_scope = _SCOPED[table]
                status = await conn.execute(
                    f'DELETE FROM "{table}"'
                    " WHERE (scope::text = $1 AND scope_id = ANY($2::bigint[]))"
                    " OR (scope::text = $3 AND scope_id = ANY($4::bigint[]))",
                    link_scope,
                    links,
                    campaign_scope,
                    campaigns,
                )
            else:
                if unknown := set(columns) - set(owners):
                    raise RuntimeError(f"purge: table {table} has {unknown}: say how to purge it")
                where = " OR ".join(
                    f"{c} = ${i}" if c == "org_id" else f"{c} = ANY(${i}::bigint[])"
                    for i, c in enumerate(columns, 1)
                )
                status = await conn.execute(
                    f'DELETE FROM "{table}" WHERE {where}', *(owners[c] for c in columns)
                )
            rows[table] = _count(status)
        rows["links"] = _count(await conn.execute("DELETE FROM links WHERE org_id = $1", org_id))
        rows["campaigns"] = _count(
            await conn.execute("DELETE FROM campaigns WHERE org_id = $1", org_id)
        )
        rows["orgs"] = _count(await conn.execute("DELETE FROM orgs WHERE id = $1", org_id))
        await conn.execute("DELETE FROM privacy_tombstones WHERE org_id = $1", org_id)
        await conn.execute("INSERT INTO privacy_tombstones (org_id) VALUES ($1)", org_id)
        await audit.record(
            conn,
            operator=operator,
            action="org.purged",
            org_id=org_id,
            ticket=ticket,
            rows={table: n for table, n in rows.items() if n},
        )
    return Purged(org_id, rows, links, campaigns, codes)


_COUNTER_KEY = re.compile(rb"ct:(link|campaign):(\d+)(?::|$)")


async def forget_in_redis(
    redis: aioredis.Redis,
    *,
    codes: Sequence[str] = (),
    link_ids: Sequence[int] = (),
    campaign_ids: Sequence[int] = (),
) -> int:
    """Delete the Redis keys of these codes, links and campaigns (cached entries, counters, daily
    counters) and tell every redirector to forget them; returns the keys deleted (all kinds).
    Keys are matched by their ids, so no other organisation's key is touched."""
    deleted = 0
    with redis_errors("deleting an erased recipient's or a purged organisation's keys"):
        deleted += await invalidate_codes(redis, codes)
        for link_id in link_ids:
            deleted += await invalidate_link(redis, link_id)
        if link_ids or campaign_ids:
            wanted = {b"link": set(map(str, link_ids)), b"campaign": set(map(str, campaign_ids))}
            doomed: list[bytes] = []
            for pattern in ("ct:link:*", "ct:campaign:*"):
                async for key in redis.scan_iter(match=pattern, count=1000):
                    found = _COUNTER_KEY.match(key)
                    if found and found[2].decode() in wanted[found[1]]:
                        doomed.append(key)
            for start in range(0, len(doomed), 1000):
                deleted += await redis.delete(*doomed[start : start + 1000])
    return deleted


async def prune_tombstones(conn: asyncpg.Connection, keep: timedelta) -> int:
    """Delete the recipient tombstones older than `keep` (no event on the topic can carry their
    old pseudonym any more); an organisation's purge tombstone stays. Returns rows deleted."""
    return _count(
        await conn.execute(
            "DELETE FROM privacy_tombstones"
            " WHERE pseudonym IS NOT NULL AND created_at < now() - $1::interval",
            keep,
        )
    )


async def pseudonymise_legacy(conn: asyncpg.Connection, keys: RecipientKeys) -> Erased:
    """Turn the recipient ids stored as given before migration 0080 into pseudonyms, in codes,
    visitor rows and per-recipient clicks, one organisation per transaction; returns the ids
    converted and their codes (whose cached entries, holding the ids, must be dropped:
    `forget_in_redis`)."""
    done = 0
    renamed: list[str] = []
    for (org_id,) in await conn.fetch("SELECT DISTINCT org_id FROM legacy_recipient_ids"):
        vault = keys.vault(org_id)
        async with conn.transaction():
            await conn.execute(_TOMBSTONE_LOCK)  # no batch counts a stale visitor meanwhile
            ids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT recipient_id FROM legacy_recipient_ids WHERE org_id = $1", org_id
                )
            ]
            pseudonyms = await vault.remember(conn, ids)
            links = await _ids(conn, "SELECT id FROM links WHERE org_id = $1", org_id)
            campaigns = await _ids(conn, "SELECT id FROM campaigns WHERE org_id = $1", org_id)
            renamed += await _rename(conn, links, campaigns, ids, pseudonyms)
            await conn.execute("DELETE FROM legacy_recipient_ids WHERE org_id = $1", org_id)
        done += len(ids)
    return Erased(done, renamed)


async def _rename(
    conn: asyncpg.Connection,
    links: list[int],
    campaigns: list[int],
    old: list[str],
    new: list[str],
) -> list[str]:
    """In the codes, visitor rows, per-recipient clicks and resend audiences of these links and
    campaigns, recipient pseudonym `old[i]` becomes `new[i]`; returns the codes renamed. Counts
    and days stay as they are."""
    codes = await conn.fetch(
        "UPDATE codes c SET recipient_id = m.new"
        " FROM unnest($2::text[], $3::text[]) AS m (old, new)"
        " WHERE c.link_id = ANY($1::bigint[]) AND c.recipient_id = m.old RETURNING c.code",
        links,
        old,
        new,
    )
    visitors = (
        "SELECT 'r:' || old AS old, 'r:' || new AS new"
        " FROM unnest($2::text[], $3::text[]) AS m (old, new)"
    )
    for table, key, owned in (
        ("link_visitors", "link_id", links),
        ("campaign_visitors", "campaign_id", campaigns),
    ):
        await conn.execute(
            f"UPDATE {table} v SET visitor_id = m.new FROM ({visitors}) m"
            f" WHERE v.{key} = ANY($1::bigint[]) AND v.visitor_id = m.old",
            owned,
            old,
            new,
        )
    await conn.execute(
        f"UPDATE quarter_visitors v SET visitor_id = m.new FROM ({visitors}) m"
        " WHERE v.link_id = ANY($1::bigint[]) AND v.visitor_id = m.old",
        links,
        old,
        new,
    )
    await conn.execute(
        "UPDATE recipient_clicks k SET recipient_id = m.new"
        " FROM unnest($2::text[], $3::text[]) AS m (old, new)"
        " WHERE k.link_id = ANY($1::bigint[]) AND k.recipient_id = m.old",
        links,
        old,
        new,
    )
    await conn.execute(
        "UPDATE resend_audience a SET recipient_id = m.new"
        " FROM unnest($2::text[], $3::text[]) AS m (old, new)"
        " WHERE a.campaign_id = ANY($1::bigint[]) AND a.recipient_id = m.old",
        campaigns,
        old,
        new,
    )
    await conn.execute(
        f"UPDATE daily_visitors v SET visitor_id = m.new FROM ({visitors}) m"
        " WHERE v.visitor_id = m.old AND ((v.scope = 'l' AND v.scope_id = ANY($1::bigint[]))"
        " OR (v.scope = 'c' AND v.scope_id = ANY($4::bigint[])))",
        links,
        old,
        new,
        campaigns,
    )
    return [r["code"] for r in codes]


async def _ids(conn: asyncpg.Connection, query: str, org_id: int) -> list[int]:
    return [r[0] for r in await conn.fetch(query, org_id)]


async def _tables_of_orgs(conn: asyncpg.Connection) -> list[tuple[str, list[str]]]:
    """Each table of the schema (not a partition) with an `org_id`, `link_id` or `campaign_id`
    column, or keyed by (scope, scope_id); with those columns."""
    rows = await conn.fetch(
        "SELECT c.relname, array_agg(a.attname::text ORDER BY a.attname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND a.attname IN ('org_id', 'link_id', 'campaign_id', 'scope_id')"
        " GROUP BY c.relname ORDER BY c.relname"
    )
    return [(r[0], list(r[1])) for r in rows]


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])
