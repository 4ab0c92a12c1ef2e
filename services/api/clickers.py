"""Who clicked and who did not, for a campaign or a link: pages of JSON, or the whole list as CSV.
The lists themselves are `shared.clickers`.

Each item names the recipient by the sender's own id, opened from its sealed copy with the keys
of the caller's organisation (the scope is the caller's, or 404), and by its pseudonym (what
codes, click events and webhooks carry); an erased recipient's id is null. `GET .../clickers`
and `.../non-clickers` take `?after=<pseudonym>&limit=` (keyset pages in pseudonym order;
`next_after` is the last pseudonym of a full page); `.csv` gives the whole list, read page by
page as the report export is (`services.api.export`): one statement per page on a pooled
connection, released before the page is opened and written, so a slow reader holds no
connection, and at most `API_ORG_CONCURRENCY` heavy requests of an organisation at once.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from aiohttp import web

from services.api.auth import org_of, require_org
from services.api.body import MAX_PAGE, path_id
from services.api.context import GATE, POOL, recipient_vault
from services.api.errors import dumps
from shared import clickers, resends
from shared.campaigns import get_campaign
from shared.errors import InvalidInputError
from shared.links import get_link
from shared.recipients import RecipientVault

LISTS = ("clickers", "non-clickers")
CSV_PAGE = 5000
"""Recipients read by one statement, opened and written to the client at a time (CSV)."""
_PSEUDONYM = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Listed:
    """What a list request names: the caller's campaign or link (another organisation's is
    404); for a resend to non-clickers, its audience (`shared.resends`)."""

    scope: clickers.Scope
    resend: resends.Resend | None = None


async def scope_of(request: web.Request) -> Listed:
    """The caller's campaign or link named in the path (another organisation's is 404)."""
    org_id = await require_org(request)
    pool = request.app[POOL]
    if "link_id" in request.match_info:
        return Listed(("link", (await get_link(pool, org_id, path_id(request, "link_id"))).id))
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    made = await resends.get_resend(pool, campaign.id) if campaign.kind == "resend" else None
    return Listed(("campaign", campaign.id), made)


async def _list(
    request: web.Request,
    which: str,
    listed: Listed,
    after: str,
    limit: int,
    links: list[int] | None = None,
) -> list[Any]:
    """A page of `which` (`clickers`, `non_clickers`) of what the request names."""
    pool, vault = request.app[POOL], _vault(request)
    if listed.resend is not None:
        pick = resends.clickers if which == "clickers" else resends.non_clickers
        return await pick(pool, vault, listed.resend, after=after, limit=limit)
    if which == "clickers":
        return await clickers.clickers(pool, vault, listed.scope, after=after, limit=limit)
    return await clickers.non_clickers(
        pool, vault, listed.scope, after=after, limit=limit, links=links
    )


def recipient_page(request: web.Request) -> tuple[str, int]:
    """(after, limit) of `?after=<pseudonym>&limit=` (defaults '' and 100, at most 1000)."""
    unknown = sorted(set(request.query) - {"after", "limit"})
    if unknown:
        raise InvalidInputError(
            f"unknown query parameter(s): {', '.join(unknown)[:200]}; expected after, limit",
            code="unknown_parameter",
        )
    after = request.query.get("after", "")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InvalidInputError("limit must be a whole number", code="invalid_query") from None
    if (after and not _PSEUDONYM.fullmatch(after)) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(
            "after must be the next_after of the previous page (a pseudonym: 32 hex digits) and"
            f" limit between 1 and {MAX_PAGE}",
            code="invalid_query",
        )
    return after, limit


def _page(items: list[Any], last: str | None, limit: int) -> dict[str, Any]:
    return {"items": items, "next_after": last if len(items) == limit else None}


async def clickers_page(request: web.Request) -> web.Response:
    """A page of the recipients who clicked: clicks, bot hits, taps after expiry, first and last
    click."""
    listed = await scope_of(request)
    after, limit = recipient_page(request)
    found = await _list(request, "clickers", listed, after, limit)
    body = _page(found, found[-1].pseudonym if found else None, limit)
    return web.json_response(body, dumps=dumps)


async def non_clickers_page(request: web.Request) -> web.Response:
    """A page of the recipients who did not click."""
    listed = await scope_of(request)
    after, limit = recipient_page(request)
    found = await _list(request, "non_clickers", listed, after, limit)
    return web.json_response(
        _page(found, found[-1].pseudonym if found else None, limit), dumps=dumps
    )


def _vault(request: web.Request) -> RecipientVault:
    """The keys of the caller's organisation (`scope_of` authenticated it)."""
    return recipient_vault(request, org_of(request))


async def clickers_csv(request: web.Request) -> web.StreamResponse:
    """Every recipient who clicked, as CSV."""
    return await _stream(request, "clickers")


async def non_clickers_csv(request: web.Request) -> web.StreamResponse:
    """Every recipient who did not click, as CSV."""
    return await _stream(request, "non_clickers")


HEADERS = {
    "clickers": (
        "recipient",
        "pseudonym",
        "clicks",
        "bot_clicks",
        "after_expiry",
        "first_click",
        "last_click",
    ),
    "non_clickers": ("recipient", "pseudonym"),
}
"""The columns of each CSV list."""


def _rows(items: list[clickers.Clicker] | list[clickers.NonClicker]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for item in items:
        cell = clickers.spreadsheet_safe(item.recipient or "")
        if isinstance(item, clickers.Clicker):
            rows.append(
                (
                    cell, item.pseudonym, item.clicks, item.bot_clicks, item.after_expiry,
                    _iso(item.first_click), _iso(item.last_click),
                )
            )  # fmt: skip
        else:
            rows.append((cell, item.pseudonym))
    return rows


def _iso(at: Any) -> str:
    """A time as RFC 3339 in UTC with milliseconds (`2026-12-02T10:00:00.000Z`)."""
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}Z"


async def _stream(request: web.Request, which: str) -> web.StreamResponse:
    listed, vault = await scope_of(request), _vault(request)
    scope = listed.scope
    if request.query:
        raise InvalidInputError("the CSV lists take no query parameters", code="unknown_parameter")
    pool = request.app[POOL]
    with request.app[GATE].enter(vault.org_id):
        links = await clickers.scope_links(pool, scope)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": (
                    f'attachment; filename="clicktrack-{scope[0]}-{scope[1]}-'
                    f'{which.replace("_", "-")}.csv"'
                ),
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADERS[which])
        after = ""
        while True:
            # One statement on a pooled connection, released before the page is written.
            page = await _list(request, which, listed, after, CSV_PAGE, links)
            writer.writerows(_rows(page))
            await response.write(out.getvalue().encode())
            out.seek(0)
            out.truncate()
            if len(page) < CSV_PAGE:
                break
            after = page[-1].pseudonym
    await response.write_eof()
    return response
