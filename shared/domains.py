"""Short domains of organisations, and the prefix of a campaign's short links.

Indian operators block an SMS whose URL the sender has not whitelisted on its DLT portal, and a
short link is whitelisted as its short domain with the sender's headers, so each brand needs its
own short domain (`s.brand.in`) rather than one shared by every customer. An operator registers
domains for an organisation (`clicktrack domain add`, or the operator API); the first one, or the
one named `--default`, is the organisation's default, and a campaign may name another of them.
Organisations without a domain of their own use the global `SHORT_DOMAIN`.

An organisation may ask for the campaign's DLT header in the path of its links
(`s.brand.in/ABCDEF/7383936D89`, `orgs.header_in_path`): several operators expect it there.
The redirector resolves by host, header and code (`services/redirector/hosts.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared import audit
from shared.campaigns import Campaign, get_campaign
from shared.errors import InvalidInputError
from shared.hostnames import clean_domain, hostname
from shared.links import Link
from shared.orgs import Org, Owned, get_org
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ShortDomain:
    """A short domain of an organisation."""

    domain: str
    org_id: int
    is_default: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ShortPrefix:
    """What a campaign's short links start with: `domain/` or `domain/HEADER/`."""

    domain: str
    header: str | None
    """The DLT header in the path, when the organisation asks for it."""

    def url(self, code: str) -> str:
        """The short link of `code` as an SMS carries it."""
        if self.header is None:
            return f"{self.domain}/{code}"
        return f"{self.domain}/{self.header}/{code}"

    def length(self, code_length: int) -> int:
        """Characters of a short link with a code of `code_length`."""
        return len(self.domain) + 1 + (len(self.header) + 1 if self.header else 0) + code_length


_COLUMNS = "domain, org_id, is_default, created_at"
_DOMAINS = Owned(
    "short_domains", ShortDomain, _COLUMNS, "short domain", "is_default DESC, created_at, domain"
)


async def list_domains(conn: asyncpg.Connection | asyncpg.Pool, org_id: int) -> list[ShortDomain]:
    """The organisation's domains, the default first."""
    return await _DOMAINS.all(conn, org_id)


async def add_domain(
    pool: asyncpg.Pool,
    org_id: int,
    domain: str,
    *,
    default: bool,
    move: bool,
    longest_link: int,
    global_domain: str,
    operator: str,
    ticket: str | None,
) -> ShortDomain:
    """Register `domain` for the organisation (idempotent); its first domain, or one added with
    `default`, becomes its default. A domain of another organisation is refused
    (`domain_taken`) unless `move`. `longest_link` is the DLT slot limit minus the code and its
    slash: a domain longer than that (less the header's segment, when the organisation puts the
    header in the path) could never carry a link (`domain_too_long`). The global
    `SHORT_DOMAIN` serves every organisation and cannot be one's own (`domain_taken`)."""
    # the ticket is checked before the domain's own rules, as `acting` would check it
    domain, ticket = clean_domain(domain), audit.clean_ticket(ticket)
    if domain == hostname(global_domain):
        raise InvalidInputError(
            f"{domain} is the global short domain (SHORT_DOMAIN): it serves every organisation",
            code="domain_taken",
        )
    _check_room([domain], longest_link, header_in_path=False)
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        conn = trail.conn
        org = await get_org(conn, org_id)
        _check_room([domain], longest_link, header_in_path=org.header_in_path)
        owner = await conn.fetchval(
            "SELECT org_id FROM short_domains WHERE domain = $1 FOR UPDATE", domain
        )
        if owner is not None and owner != org_id:
            if not move:
                raise InvalidInputError(
                    f"{domain} belongs to organisation {owner}: add it with --move (API: "
                    '"move": true) to take it over',
                    code="domain_taken",
                )
            await conn.execute(
                "UPDATE short_domains SET org_id = $2, is_default = false WHERE domain = $1",
                domain,
                org_id,
            )
            await _promote(conn, owner)
            await trail.record("domain.moved", org_id, domain=domain, from_org=owner)
        elif owner is None:
            added = await conn.fetchval(
                "INSERT INTO short_domains (domain, org_id) VALUES ($1, $2)"
                " ON CONFLICT (domain) DO NOTHING RETURNING domain",
                domain,
                org_id,
            )
            if added is None:  # another organisation took it a moment ago
                raise InvalidInputError(
                    f"{domain} was just registered for another organisation", code="domain_taken"
                )
            await trail.record("domain.added", org_id, domain=domain)
        has_default = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM short_domains WHERE org_id = $1 AND is_default)", org_id
        )
        if default or not has_default:
            await _make_default(conn, org_id, domain)
            if default:
                await trail.record("domain.default", org_id, domain=domain)
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM short_domains WHERE domain = $1", domain)
    return ShortDomain(**dict(row))


async def remove_domain(
    pool: asyncpg.Pool, org_id: int, domain: str, *, operator: str, ticket: str | None
) -> ShortDomain:
    """Remove one of the organisation's domains (its links there then answer 404); when it was
    the default, the oldest remaining domain becomes the default."""
    domain = clean_domain(domain)
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        removed = await _DOMAINS.delete(
            trail.conn,
            domain,
            org_id,
            column="domain",
            missing=f"organisation {org_id} has no short domain {domain}",
        )
        await _promote(trail.conn, org_id)
        await trail.record("domain.removed", org_id, domain=domain)
    return removed


async def _make_default(conn: asyncpg.Connection, org_id: int, domain: str) -> None:
    await conn.execute(
        "UPDATE short_domains SET is_default = false WHERE org_id = $1 AND is_default", org_id
    )
    await conn.execute("UPDATE short_domains SET is_default = true WHERE domain = $1", domain)


async def _promote(conn: asyncpg.Connection, org_id: int) -> None:
    """Make the oldest domain of the organisation its default, if it has none."""
    await conn.execute(
        "UPDATE short_domains SET is_default = true WHERE domain = ("
        " SELECT domain FROM short_domains WHERE org_id = $1 ORDER BY created_at, domain LIMIT 1)"
        " AND NOT EXISTS (SELECT 1 FROM short_domains WHERE org_id = $1 AND is_default)",
        org_id,
    )


async def short_prefix(
    conn: asyncpg.Connection | asyncpg.Pool,
    org: Org,
    campaign: Campaign | None,
    global_domain: str,
) -> ShortPrefix:
    """The prefix of the campaign's short links: the campaign's domain, else the organisation's
    default, else `global_domain`; with the campaign's DLT header when the organisation asks for
    it (`missing_header` when the campaign has none)."""
    wanted = campaign.short_domain if campaign is not None else None
    rows = await conn.fetch(
        "SELECT domain, is_default FROM short_domains WHERE org_id = $1", org.id
    )
    owned = {r["domain"]: r["is_default"] for r in rows}
    if wanted is not None:
        if wanted not in owned:
            raise InvalidInputError(
                f"campaign {campaign.id if campaign else ''} names the short domain {wanted},"
                " which is no longer the organisation's",
                code="unknown_domain",
            )
        domain = wanted
    else:
        domain = next((d for d, is_default in owned.items() if is_default), global_domain)
    header = None
    if org.header_in_path:
        header = campaign.dlt_header if campaign is not None else None
        if header is None:
            raise InvalidInputError(
                "the organisation's links carry the DLT header in their path: give the campaign"
                " its dlt_header",
                code="missing_header",
            )
    return ShortPrefix(domain, header)


async def link_prefix(
    conn: asyncpg.Connection | asyncpg.Pool, link: Link, global_domain: str
) -> ShortPrefix:
    """The prefix of a link's short links (its campaign's, see `short_prefix`)."""
    org = await get_org(conn, link.org_id)
    campaign = None
    if link.campaign_id is not None:
        campaign = await get_campaign(conn, link.org_id, link.campaign_id)
    return await short_prefix(conn, org, campaign, global_domain)


HEADER_SEGMENT = 7
"""What a DLT header in the path adds to a short link: a slash and the six characters."""


def longest_link(settings: Settings) -> int:
    """The most characters a short domain may have: the DLT slot less the code and its slash."""
    return settings.api.dlt_var_limit - 1 - settings.links.code_length


def _check_room(names: list[str], longest_link: int, *, header_in_path: bool) -> None:
    room = longest_link - (HEADER_SEGMENT if header_in_path else 0)
    if long := [name for name in names if len(name) > room]:
        with_header = " with the DLT header in the path" if header_in_path else ""
        raise InvalidInputError(
            f"{', '.join(long)}: its links could not fit the DLT slot{with_header} (at most"
            f" {room} characters for the domain)",
            code="domain_too_long",
        )


def header_room(
    longest_link: int, global_domain: str
) -> Callable[[asyncpg.Connection, int], Awaitable[None]]:
    """The check before the DLT header goes into an organisation's short links (`orgs.switch`'s
    `before`): each domain its links may use (its own, or the global one while it has no
    default) must leave room for the header (`domain_too_long`)."""

    async def check(conn: asyncpg.Connection, org_id: int) -> None:
        rows = await conn.fetch(
            "SELECT domain, is_default FROM short_domains WHERE org_id = $1", org_id
        )
        names = [r["domain"] for r in rows]
        if not any(r["is_default"] for r in rows):
            names.append(hostname(global_domain))
        _check_room(names, longest_link, header_in_path=True)

    return check
