"""Who clicked and who did not, for a campaign or a link: pages of JSON, or the whole list as CSV
(streamed by Postgres' COPY, so a million rows never sit in memory). The lists themselves are
`shared.clickers`.

`GET .../clickers` and `.../non-clickers` take `?after=<recipient>&limit=` (keyset pages in
recipient order; `next_after` is the last recipient of a full page); `.csv` gives the whole list.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import require_org
from services.api.body import MAX_PAGE, path_id
from services.api.context import POOL
from services.api.errors import dumps
from shared import clickers
from shared.campaigns import get_campaign
from shared.errors import InvalidInputError
from shared.links import get_link
from shared.minting import MAX_RECIPIENT

LISTS = ("clickers", "non-clickers")
CSV_CHUNK = 1 << 16
"""Bytes handed to the client at a time when streaming a list."""


def add_routes(router: web.UrlDispatcher) -> None:
    for base in (r"/v1/campaigns/{campaign_id:\d+}", r"/v1/links/{link_id:\d+}"):
        router.add_get(f"{base}/clickers", clickers_page)
        router.add_get(f"{base}/non-clickers", non_clickers_page)
        router.add_get(f"{base}/clickers.csv", clickers_csv)
        router.add_get(f"{base}/non-clickers.csv", non_clickers_csv)


async def scope_of(request: web.Request) -> clickers.Scope:
    """The caller's campaign or link named in the path (another organisation's is 404)."""
    org_id = await require_org(request)
    pool = request.app[POOL]
    if "link_id" in request.match_info:
        return "link", (await get_link(pool, org_id, path_id(request, "link_id"))).id
    return "campaign", (await get_campaign(pool, org_id, path_id(request, "campaign_id"))).id


def recipient_page(request: web.Request) -> tuple[str, int]:
    """(after, limit) of `?after=<recipient>&limit=` (defaults '' and 100, at most 1000)."""
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
    if len(after) > MAX_RECIPIENT or not after.isprintable() or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(
            f"after must be a recipient id (at most {MAX_RECIPIENT} characters) and limit"
            f" between 1 and {MAX_PAGE}",
            code="invalid_query",
        )
    return after, limit


def _page(items: list[Any], last: str | None, limit: int) -> dict[str, Any]:
    return {"items": items, "next_after": last if len(items) == limit else None}


async def clickers_page(request: web.Request) -> web.Response:
    """A page of the recipients who clicked: clicks, bot hits, taps after expiry, first and last
    click."""
    scope = await scope_of(request)
    after, limit = recipient_page(request)
    found = await clickers.clickers(request.app[POOL], scope, after=after, limit=limit)
    body = _page(found, found[-1].recipient if found else None, limit)
    return web.json_response(body, dumps=dumps)


async def non_clickers_page(request: web.Request) -> web.Response:
    """A page of the recipients who did not click."""
    scope = await scope_of(request)
    after, limit = recipient_page(request)
    found = await clickers.non_clickers(request.app[POOL], scope, after=after, limit=limit)
    items = [{"recipient": r} for r in found]
    return web.json_response(_page(items, found[-1] if found else None, limit), dumps=dumps)


async def clickers_csv(request: web.Request) -> web.StreamResponse:
    """Every recipient who clicked, as CSV."""
    return await _stream(request, "clickers")


async def non_clickers_csv(request: web.Request) -> web.StreamResponse:
    """Every recipient who did not click, as CSV."""
    return await _stream(request, "non_clickers")


async def _stream(request: web.Request, which: str) -> web.StreamResponse:
    scope = await scope_of(request)
    if request.query:
        raise InvalidInputError("the CSV lists take no query parameters", code="unknown_parameter")
    pool = request.app[POOL]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        links = await clickers.scope_links(conn, scope)
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
        if not links and which == "non_clickers":
            await response.write(b"recipient\r\n")
        else:
            pending = bytearray()

            async def out(chunk: bytes) -> None:
                pending.extend(chunk)
                if len(pending) >= CSV_CHUNK:
                    await response.write(bytes(pending))
                    pending.clear()

            await conn.copy_from_query(
                clickers.csv_sql(scope, which, len(links)),
                "",
                None,
                scope[1],
                *([links] if which == "non_clickers" else []),
                output=out,
                format="csv",
                header=True,
            )
            await response.write(bytes(pending))
    await response.write_eof()
    return response
