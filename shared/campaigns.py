"""Campaigns: one send (or a series of sends) of a message; links live inside campaigns.

Kinds: `one_time`, `recurring`, `coupon_expiry_reminder` and `resend` (`CampaignKind`, the one
list of them: the click event's type, its JSON Schema, the API and the `CHECK`s of migration 0014
derive from it, and a unit test holds the SQL equal to it). A resend or a recurrence
may name a parent campaign of the same organisation. A resend goes to people who already got the
parent's message, so it reuses the parent's links and each recipient's code there: a recipient
who taps both messages is still one unique visitor. A recurrence is a new send with its own links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

import asyncpg

from shared import db
from shared.errors import InvalidInputError
from shared.hostnames import clean_domain
from shared.orgs import Owned, clean_name

CampaignKind = Literal["one_time", "recurring", "coupon_expiry_reminder", "resend"]
"""What a campaign is. Adding one: here, then a migration rewriting the `CHECK`s, deployed (with
the counter) before the API creates campaigns of the new kind."""
CAMPAIGN_KINDS: tuple[CampaignKind, ...] = get_args(CampaignKind)
"""The kinds, in the order the schema and the SQL list them."""
CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}(?!\n)$"
"""A channel (`sms`, `whatsapp`, ...): open-ended, so a pattern rather than a list; a reporting
dimension. The same text is a Python, ECMA-262 (JSON Schema, OpenAPI) and Postgres regular
expression: `(?!\n)` stops Python's `$` from also matching before a final newline."""
DEFAULT_CHANNEL = "sms"
PARENT_KINDS = frozenset({"resend", "recurring"})
"""Kinds that may name a parent campaign."""
_CHANNEL = re.compile(CHANNEL_PATTERN)
HEADER_PATTERN = r"^[A-Z0-9]{6}(?!\n)$"
"""A DLT header (sender id): 6 upper-case letters or digits (migration 0041's `CHECK`)."""
_HEADER = re.compile(HEADER_PATTERN)


def clean_header(value: object) -> str:
    """A DLT header, stored upper case, or `invalid_header`."""
    header = value.strip().upper() if isinstance(value, str) else ""
    if not _HEADER.fullmatch(header):
        raise InvalidInputError(
            f"a DLT header is 6 letters or digits (got {value!r})", code="invalid_header"
        )
    return header


def is_channel(value: str) -> bool:
    """True when `value` is a channel's valid spelling (`CHANNEL_PATTERN`)."""
    return _CHANNEL.fullmatch(value) is not None


COLUMNS = "id, org_id, name, kind, channel, parent_id, created_at, dlt_header, short_domain"
"""The columns of a `Campaign`, for every query that builds one."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign of an organisation."""

    id: int
    org_id: int
    name: str
    kind: CampaignKind
    channel: str
    """Delivery channel (`sms`, ...): a reporting dimension."""
    parent_id: int | None
    """The campaign this one resends or recurs, if any."""
    created_at: datetime
    dlt_header: str | None
    """The DLT header (sender id) the campaign is sent under; a resend's is its parent's."""
    short_domain: str | None
    """One of the organisation's short domains; null: its default (shared.domains)."""


_CAMPAIGNS = Owned("campaigns", Campaign, COLUMNS, "campaign")


async def create_campaign(
    conn: asyncpg.Connection | asyncpg.Pool,
    org_id: int,
    name: str,
    kind: str,
    channel: str = DEFAULT_CHANNEL,
    *,
    parent_id: int | None = None,
    dlt_header: str | None = None,
    short_domain: str | None = None,
) -> int:
    """Create a campaign; returns its id. The parent must be a campaign of the same org; a
    resend without a `dlt_header` takes its parent's (it reuses the parent's links), and may not
    name another. `short_domain` must be one of the organisation's domains."""
    header = None if dlt_header is None else clean_header(dlt_header)
    if kind not in CAMPAIGN_KINDS:
        raise InvalidInputError(
            f"campaign kind must be one of {', '.join(sorted(CAMPAIGN_KINDS))}", code="invalid_kind"
        )
    if not isinstance(channel, str) or not is_channel(channel):
        raise InvalidInputError(
            "channel must be 1 to 32 lower-case letters, digits or '_', starting with a letter",
            code="invalid_channel",
        )
    if parent_id is not None:
        if kind not in PARENT_KINDS:
            raise InvalidInputError(
                f"only {' and '.join(sorted(PARENT_KINDS))} campaigns have a parent",
                code="invalid_parent",
            )
        parent = await conn.fetchrow(
            "SELECT dlt_header FROM campaigns WHERE id = $1 AND org_id = $2", parent_id, org_id
        )
        if parent is None:
            raise InvalidInputError(
                f"parent campaign {parent_id} does not exist", code="invalid_parent"
            )
        if kind == "resend":
            if header is not None and parent["dlt_header"] not in (None, header):
                raise InvalidInputError(
                    f"a resend reuses its parent's links, and so its DLT header"
                    f" {parent['dlt_header']}",
                    code="invalid_header",
                )
            header = header or parent["dlt_header"]
    if short_domain is not None:
        short_domain = clean_domain(short_domain)
        owned = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM short_domains WHERE domain = $1 AND org_id = $2)",
            short_domain,
            org_id,
        )
        if not owned:
            raise InvalidInputError(
                f"{short_domain} is not one of the organisation's short domains",
                code="unknown_domain",
            )
    campaign_id: int = await conn.fetchval(
        "INSERT INTO campaigns (org_id, name, kind, channel, parent_id, dlt_header, short_domain)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        org_id,
        clean_name(name, "campaign name"),
        kind,
        channel,
        parent_id,
        header,
        short_domain,
    )
    return campaign_id


async def get_campaign(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, campaign_id: int
) -> Campaign:
    """The organisation's campaign, or `NotFoundError` (also for another org's campaign)."""
    return await _CAMPAIGNS.one(conn, campaign_id, org_id)


async def list_campaigns(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, *, after_id: int = 0, limit: int = 100
) -> list[Campaign]:
    """The organisation's campaigns by id, `limit` of them after `after_id`."""
    return await db.fetch_all(
        conn,
        Campaign,
        f"SELECT {COLUMNS} FROM campaigns WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        org_id,
        after_id,
        limit,
    )


async def link_lineage(
    conn: asyncpg.Connection | asyncpg.Pool, campaign: Campaign | int
) -> list[int]:
    """Campaign ids whose links this campaign (or campaign id) reuses, nearest first: itself,
    then for a resend its parent, and up while the parent is itself a resend."""
    rows = await conn.fetch(
        """
        WITH RECURSIVE up (id, kind, parent_id, depth) AS (
            SELECT id, kind, parent_id, 0 FROM campaigns WHERE id = $1
            UNION ALL
            SELECT c.id, c.kind, c.parent_id, up.depth + 1
            FROM campaigns c JOIN up ON c.id = up.parent_id
            WHERE up.kind = 'resend' AND up.depth < 100
        )
        SELECT id FROM up ORDER BY depth
        """,
        campaign if isinstance(campaign, int) else campaign.id,
    )
    return [r["id"] for r in rows]
