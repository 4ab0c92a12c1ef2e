"""What resolving a short code yields: the shape a code must have, what a code and a link are
bound to (`CodeEntry`, `LinkEntry`, as cached in memory and Redis), and the answer for one
request (`Resolution`, its `outcome` one of the constants below)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.campaigns import CampaignKind


def code_shape(min_length: int, max_length: int) -> re.Pattern[str]:
    """The pattern a possible code matches: base62, `min_length` to `max_length` characters."""
    return re.compile(rf"[0-9A-Za-z]{{{min_length},{max_length}}}")


# What `Resolution.outcome` can be.
REDIRECT = "redirect"
FALLBACK = "fallback"
GONE = "gone"
NOT_FOUND = "not_found"
MALFORMED = "malformed"
UNTRACKED = "untracked"
"""The link's organisation has tracking off: its fallback URL (`location`) or 404, no event."""


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """What a code is bound to; never changes once minted."""

    link_id: int
    recipient_id: str | None


@dataclass(frozen=True, slots=True)
class LinkEntry:
    """The attributes of a link the redirector needs; may change (see `invalidate_link`)."""

    destination: str
    org_id: int
    campaign_id: int | None
    campaign_kind: CampaignKind | None
    channel: str
    disabled: bool
    expires_at: float | None
    """Unix time, seconds, after which the link sends visitors to `fallback_url` or answers 410."""
    fallback_url: str | None
    tracking: bool
    """The organisation's link tracking; off: the code no longer redirects as a tracked link."""
    header: str | None
    """The campaign's DLT header: a header in the request's path must be this one."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The answer for one request: the outcome, where to go, and what to record."""

    outcome: str
    location: str | None = None
    code: CodeEntry | None = None
    link: LinkEntry | None = None


def link_of(row: Any) -> LinkEntry:
    """The `LinkEntry` of a row with the columns of the resolver's link queries."""
    expires = row["expires_at"]
    return LinkEntry(
        destination=row["destination"],
        org_id=row["org_id"],
        campaign_id=row["campaign_id"],
        campaign_kind=row["campaign_kind"],
        channel=row["channel"],
        disabled=row["disabled"],
        expires_at=None if expires is None else expires.timestamp(),
        fallback_url=row["fallback_url"],
        tracking=row["tracking"],
        header=row["header"],
    )
