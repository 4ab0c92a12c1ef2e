"""Who clicked and who did not, for a campaign or a link: pages of JSON, or the whole list as CSV.
The lists themselves are `shared.clickers`.

Each item names the recipient by the sender's own id, opened from its sealed copy with the keys
of the caller's organisation (the scope is the caller's, or 404), and by its pseudonym (what
codes, click events and webhooks carry); an erased recipient's id is null (empty in CSV).
`GET .../clickers` and `.../non-clickers` take `?after=<pseudonym>&limit=` (keyset pages in
pseudonym order; `next_after` is the last pseudonym of a full page); `.csv` gives the whole list,
streamed by Postgres' COPY (pseudonyms and sealed ids) and opened here line by line, so a million
rows never sit in memory; at most `API_ORG_CONCURRENCY` such heavy requests of an organisation
run at once (`org_gate`). Keyset pages were tried for the CSV and were 15 to 60 times slower
(docs/counting.md).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.api.auth import one_turn, org_of, require_org
from services.api.body import MAX_PAGE, path_id
from services.api.context import GATE, POOL, recipient_vault
from services.api.errors import dumps
from shared import clickers, resends
from shared.campaigns import get_campaign
from shared.errors import InvalidInputError
from shared.links import get_link
from shared.recipients import RecipientVault

LISTS = ("clickers", "non-clickers")
CSV_CHUNK = 1 << 16
"""Characters handed to the client at a time when streaming a list."""
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
    found: list[Any] = await clickers.page(
        pool, vault, listed.scope, which, after=after, limit=limit, links=links
    )
    return found


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


@one_turn
async def clickers_page(request: web.Request) -> web.Response:
    """A page of the recipients who clicked: clicks, bot hits, taps after expiry, first and last
    click."""
    listed = await scope_of(request)
    after, limit = recipient_page(request)
    found = await _list(request, "clickers", listed, after, limit)
    body = _page(found, found[-1].pseudonym if found else None, limit)
    return web.json_response(body, dumps=dumps)


@one_turn
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


def _source(listed: Listed, which: str, links: list[int]) -> tuple[str, tuple[object, ...]]:
    """The list query of `which` for what the request names, and its parameters from $3 on."""
    if listed.resend is not None:
        sql = resends.clickers_sql() if which == "clickers" else resends.non_clickers_sql()
        return sql, (listed.resend.campaign_id, listed.resend.links)
    if which == "clickers":
        return clickers.clickers_sql(listed.scope), (listed.scope[1],)
    return clickers.non_clickers_sql(listed.scope, len(links)), (listed.scope[1], links)


async def _stream(request: web.Request, which: str) -> web.StreamResponse:
    listed, vault = await scope_of(request), _vault(request)
    scope = listed.scope
    if request.query:
        raise InvalidInputError("the CSV lists take no query parameters", code="unknown_parameter")
    pool = request.app[POOL]
    with request.app[GATE].enter(vault.org_id):
        async with pool.acquire() as conn, conn.transaction(readonly=True):
            sql, keys = _source(listed, which, await clickers.scope_links(conn, scope))
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
            pending = b""

            async def opened(chunk: bytes) -> None:
                """COPY's output, a line at a time: each id opened, then written out."""
                nonlocal pending
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                writer.writerows(clickers.csv_lines(vault, lines))
                if out.tell() >= CSV_CHUNK:
                    await response.write(out.getvalue().encode())
                    out.seek(0)
                    out.truncate()

            await conn.copy_from_query(
                clickers.csv_sql(which, sql, 2 + len(keys)),
                "",
                None,
                *keys,
                vault.org_id,
                output=opened,
                format="csv",
            )
            await opened(b"\n")  # the last line, if COPY's last chunk did not end one
            await response.write(out.getvalue().encode())
    await response.write_eof()
    return response
