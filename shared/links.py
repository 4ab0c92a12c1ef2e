"""Tracked links: a destination inside a campaign (optionally expiring, with a fallback URL),
and the short codes that lead to it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from shared import db
from shared.campaigns import Campaign, create_campaign, link_lineage
from shared.errors import InvalidLinkError
from shared.link_cache import CodeRow
from shared.minting import mint
from shared.orgs import Owned, create_org
from shared.recipients import RecipientKeys
from shared.urls import normalise_destination

__all__ = [
    "CreatedLink",
    "InvalidLinkError",
    "Link",
    "add_link",
    "create_campaign",
    "create_link",
    "create_org",
    "get_link",
    "link_for_destination",
    "list_links",
    "update_link",
]

_COLUMNS = "id, org_id, campaign_id, destination, disabled, expires_at, fallback_url, created_at"
LOCK_STRIPES = 16
"""Advisory locks one transaction takes at most to create a campaign's links
(`link_for_destination`), whatever the number of destinations."""
CHANGEABLE = ("destination", "disabled", "expires_at", "fallback_url")
"""What may change on a link once its codes are out (each code keeps its link)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A tracked link."""

    id: int
    org_id: int
    campaign_id: int | None
    destination: str
    """Normalised http(s) URL the redirector sends visitors to."""
    disabled: bool
    expires_at: datetime | None
    """After this instant the redirector sends visitors to `fallback_url`, or answers 410."""
    fallback_url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreatedLink:
    """A tracked link and its codes: one per recipient, or one shared code when no recipients."""

    link_id: int
    org_id: int
    campaign_id: int | None
    destination: str
    codes: dict[str | None, str]
    """The sender's recipient id (None: the shared code) -> its code."""
    rows: list[CodeRow] = field(default_factory=list)
    """(code, link id, pseudonym) of each code: what may be cached."""

    def code_rows(self) -> list[CodeRow]:
        """(code, link id, pseudonym) of each code, as `link_cache.cache_codes` takes them."""
        return list(self.rows)


_LINKS = Owned("links", Link, _COLUMNS, "link")

MAX_EXPIRY_YEARS = 100
"""How far ahead `expires_at` may be: past year 9999 in UTC a time cannot even be stored
(`9999-12-31T23:59:59-12:00` is 10000-01-01 in UTC), and no SMS link needs a century."""


def check_expiry(expires_at: datetime | None, fallback_url: str | None) -> str | None:
    """Validate an expiry (aware, in the future, within `MAX_EXPIRY_YEARS`) and return the
    normalised fallback URL."""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidLinkError("expires_at must carry a time zone", code="invalid_expiry")
        now = datetime.now(UTC)
        if expires_at <= now:
            raise InvalidLinkError("expires_at must be in the future", code="invalid_expiry")
        if expires_at > now + timedelta(days=365 * MAX_EXPIRY_YEARS):
            raise InvalidLinkError(
                f"expires_at must be within {MAX_EXPIRY_YEARS} years", code="invalid_expiry"
            )
    if fallback_url is None:
        return None
    try:
        return normalise_destination(fallback_url)
    except InvalidLinkError as exc:
        raise InvalidLinkError(f"fallback_url: {exc}", code="invalid_fallback") from None


async def create_link(
    pool: asyncpg.Pool,
    *,
    org_id: int,
    destination: str,
    campaign_id: int | None = None,
    recipients: list[str] | None = None,
    expires_at: datetime | None = None,
    fallback_url: str | None = None,
    code_length: int,
    keys: RecipientKeys | None = None,
) -> CreatedLink:
    """Create a link and its codes (one per recipient, else one shared) in one transaction;
    codes are `code_length` characters (`LinkSettings.code_length`). With recipients, `keys`
    (`RECIPIENT_KEY`) turns them into pseudonyms; the answer's codes are by the sender's ids."""

    destination = normalise_destination(destination)
    fallback = check_expiry(expires_at, fallback_url)
    async with pool.acquire() as conn, conn.transaction():
        link_id: int = await conn.fetchval(
            "INSERT INTO links (org_id, campaign_id, destination, expires_at, fallback_url)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            org_id,
            campaign_id,
            destination,
            expires_at,
            fallback,
        )
        wanted: list[str | None] = list(recipients) if recipients else [None]
        vault = keys.vault(org_id) if keys is not None else None
        minted = await mint(conn, link_id, wanted, length=code_length, vault=vault)
    return CreatedLink(
        link_id,
        org_id,
        campaign_id,
        destination,
        minted.by_recipient(),
        minted.code_rows(link_id),
    )


async def add_link(
    conn: asyncpg.Connection,
    campaign: Campaign,
    destination: str,
    *,
    expires_at: datetime | None = None,
    fallback_url: str | None = None,
) -> tuple[Link, bool]:
    """A link to `destination` in the campaign, and whether it was created now.

    A resend first looks for the destination among the live (enabled, unexpired) links of the
    campaigns it resends and returns that link (so recipients keep their codes); otherwise a new
    link is created.
    """
    destination = normalise_destination(destination)
    fallback = check_expiry(expires_at, fallback_url)
    if campaign.kind == "resend":
        found = await _find(conn, await link_lineage(conn, campaign), destination)
        if found is not None:
            return found, False
    row = await conn.fetchrow(
        "INSERT INTO links (org_id, campaign_id, destination, expires_at, fallback_url)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}",
        campaign.org_id,
        campaign.id,
        destination,
        expires_at,
        fallback,
    )
    return Link(**dict(row)), True


async def link_for_destination(conn: asyncpg.Connection, campaign: Campaign, url: str) -> Link:
    """The campaign's link to `url` (looking through what a resend reuses), created if none:
    what rendering uses. Concurrent calls for one destination agree on one link."""
    destination = normalise_destination(url)
    lineage = await link_lineage(conn, campaign)
    found = await _find(conn, lineage, destination)
    if found is not None:
        return found
    async with conn.transaction():
        # Serialise creators of this (campaign, destination) and of the few others that share
        # its stripe; then look again. Stripes, not one lock per destination: the lock lives
        # until the caller's transaction ends, and a batch render of 10,000 destinations in one
        # transaction would otherwise hold 10,000 locks, most of Postgres's shared lock table.
        stripe = zlib.crc32(destination.encode()) % LOCK_STRIPES
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($2, $1))",
            campaign.id,
            f"link-stripe:{stripe}",
        )
        found = await _find(conn, lineage, destination)
        if found is not None:
            return found
        link, _ = await add_link(conn, campaign, destination)
        return link


async def find_live(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_ids: list[int], url: str
) -> Link | None:
    """The live (enabled, unexpired) link to `url` among the campaigns' links, nearest campaign
    first: the link a resend reuses for that destination."""
    return await _find(conn, campaign_ids, normalise_destination(url))


async def _find(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_ids: list[int], destination: str
) -> Link | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM links"
        " WHERE campaign_id = ANY($1::bigint[]) AND md5(destination) = md5($2)"
        " AND destination = $2 AND NOT disabled AND (expires_at IS NULL OR expires_at > now())"
        " ORDER BY array_position($1::bigint[], campaign_id), id LIMIT 1",
        campaign_ids,
        destination,
    )
    return None if row is None else Link(**dict(row))


async def get_link(conn: asyncpg.Connection | asyncpg.Pool, org_id: int, link_id: int) -> Link:
    """The organisation's link, or `NotFoundError` (also for another org's link)."""
    return await _LINKS.one(conn, link_id, org_id)


async def list_links(
    conn: asyncpg.Connection | asyncpg.Pool,
    org_id: int,
    campaign_id: int,
    *,
    after_id: int = 0,
    limit: int = 100,
) -> list[Link]:
    """The links of one of the organisation's campaigns, by id."""
    return await db.fetch_all(
        conn,
        Link,
        f"SELECT {_COLUMNS} FROM links WHERE org_id = $1 AND campaign_id = $2 AND id > $3"
        " ORDER BY id LIMIT $4",
        org_id,
        campaign_id,
        after_id,
        limit,
    )


async def update_link(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, link_id: int, changes: dict[str, object]
) -> Link:
    """Change some of `CHANGEABLE` on the organisation's link and return it.

    `destination` and `fallback_url` are validated as on creation; `expires_at` must be in the
    future (None clears it, as None clears `fallback_url`). Raises `NotFoundError` for another
    organisation's link. The caller then calls `shared.link_cache.invalidate_link`.
    """
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown or not changes:
        raise InvalidLinkError(
            f"change at least one of {', '.join(CHANGEABLE)}", code="invalid_change"
        )
    values = dict(changes)
    if "destination" in values:
        values["destination"] = normalise_destination(str(values["destination"]))
    expires_at = values.get("expires_at")
    fallback_url = values.get("fallback_url")
    if not isinstance(expires_at, datetime | None) or not isinstance(fallback_url, str | None):
        raise InvalidLinkError(
            "expires_at or fallback_url has the wrong type", code="invalid_change"
        )
    fallback = check_expiry(expires_at, fallback_url)
    if "fallback_url" in values:
        values["fallback_url"] = fallback
    names = [name for name in CHANGEABLE if name in values]  # fixed names: no SQL from input
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
    row = await conn.fetchrow(
        f"UPDATE links SET {sets} WHERE id = $1 AND org_id = $2 RETURNING {_COLUMNS}",
        link_id,
        org_id,
        *(values[name] for name in names),
    )
    if row is None:
        return await get_link(conn, org_id, link_id)  # raises NotFoundError, as for reading
    return Link(**dict(row))
