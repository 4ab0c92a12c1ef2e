"""Creating organisations, campaigns and tracked links with their short codes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from shared.codes import mint_code
from shared.events import CAMPAIGN_KINDS

_MINT_TRIES = 5


class InvalidLinkError(ValueError):
    """A destination or campaign attribute is not acceptable; the message says why."""


@dataclass(frozen=True, slots=True)
class CreatedLink:
    """A tracked link and its codes: one per recipient, or one shared code when no recipients."""

    link_id: int
    org_id: int
    campaign_id: int | None
    destination: str
    codes: dict[str | None, str]


def validate_destination(url: str) -> str:
    """Accept only absolute http(s) URLs with a host and no control characters or spaces."""
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise InvalidLinkError("destination contains spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidLinkError("destination must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidLinkError("destination has no host")
    return url


async def create_org(conn: asyncpg.Connection | asyncpg.Pool, name: str, *, tracking: bool) -> int:
    org_id: int = await conn.fetchval(
        "INSERT INTO orgs (name, link_tracking_enabled) VALUES ($1, $2) RETURNING id",
        name,
        tracking,
    )
    return org_id


async def create_campaign(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, name: str, kind: str, channel: str = "sms"
) -> int:
    if kind not in CAMPAIGN_KINDS:
        raise InvalidLinkError(f"campaign kind must be one of {sorted(CAMPAIGN_KINDS)}")
    campaign_id: int = await conn.fetchval(
        "INSERT INTO campaigns (org_id, name, kind, channel) VALUES ($1, $2, $3, $4) RETURNING id",
        org_id,
        name,
        kind,
        channel,
    )
    return campaign_id


async def create_link(
    pool: asyncpg.Pool,
    *,
    org_id: int,
    destination: str,
    campaign_id: int | None = None,
    recipients: list[str] | None = None,
) -> CreatedLink:
    """Create a link and its codes in one transaction; a code collision is retried."""
    validate_destination(destination)
    async with pool.acquire() as conn, conn.transaction():
        link_id: int = await conn.fetchval(
            "INSERT INTO links (org_id, campaign_id, destination) VALUES ($1, $2, $3) RETURNING id",
            org_id,
            campaign_id,
            destination,
        )
        codes: dict[str | None, str] = {}
        wanted: list[str | None] = list(recipients) if recipients else [None]
        for recipient in wanted:
            codes[recipient] = await _insert_code(conn, link_id, recipient)
    return CreatedLink(link_id, org_id, campaign_id, destination, codes)


async def _insert_code(conn: asyncpg.Connection, link_id: int, recipient: str | None) -> str:
    for _ in range(_MINT_TRIES):
        code = mint_code()
        inserted = await conn.fetchval(
            "INSERT INTO codes (code, link_id, recipient_id) VALUES ($1, $2, $3)"
            " ON CONFLICT (code) DO NOTHING RETURNING code",
            code,
            link_id,
            recipient,
        )
        if inserted:
            return code
    raise RuntimeError(f"{_MINT_TRIES} code collisions in a row: the code space is exhausted")
