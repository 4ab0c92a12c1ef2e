"""Tracked links of a campaign, and bulk minting of their per-recipient short codes."""

from __future__ import annotations

from aiohttp import web

from services.api.auth import require_org
from services.api.body import json_object, list_field, page, paged, path_id, text_field, time_field
from services.api.context import METRICS, POOL, SETTINGS
from services.api.errors import dumps
from shared import links
from shared.campaigns import get_campaign
from shared.minting import mint

MAX_RECIPIENTS = 100_000
"""Recipients one request may carry; the CLI streams bigger lists in chunks of this size."""


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(r"/v1/campaigns/{campaign_id:\d+}/links", create_link)
    router.add_get(r"/v1/campaigns/{campaign_id:\d+}/links", list_links)
    router.add_get(r"/v1/links/{link_id:\d+}", get_link)
    router.add_post(r"/v1/links/{link_id:\d+}/recipients", add_recipients)


async def create_link(request: web.Request) -> web.Response:
    """A link to a destination in the campaign: 201 when created; 200 when a resend reuses the
    link of the campaign it resends (its recipients keep their codes)."""
    org_id = await require_org(request)
    body = await json_object(request, frozenset({"destination", "expires_at", "fallback_url"}))
    pool = request.app[POOL]
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    async with pool.acquire() as conn:
        link, created = await links.add_link(
            conn,
            campaign,
            text_field(body, "destination"),
            expires_at=time_field(body, "expires_at"),
            fallback_url=text_field(body, "fallback_url", required=False),
        )
    return web.json_response(link, status=201 if created else 200, dumps=dumps)


async def list_links(request: web.Request) -> web.Response:
    """The campaign's links, by id (`?after=&limit=`)."""
    org_id = await require_org(request)
    pool = request.app[POOL]
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    after, limit = page(request)
    found = await links.list_links(pool, org_id, campaign.id, after_id=after, limit=limit)
    return web.json_response(paged(found, limit), dumps=dumps)


async def get_link(request: web.Request) -> web.Response:
    """One of the organisation's links (another organisation's is 404)."""
    org_id = await require_org(request)
    found = await links.get_link(request.app[POOL], org_id, path_id(request, "link_id"))
    return web.json_response(found, dumps=dumps)


async def add_recipients(request: web.Request) -> web.Response:
    """One short code per recipient on the link, minted in bulk (COPY); recipients that have a
    code already keep it. Up to 100,000 recipients per request."""
    org_id = await require_org(request)
    body = await json_object(request, frozenset({"recipients"}))
    recipients = list_field(body, "recipients", max_items=MAX_RECIPIENTS)
    settings = request.app[SETTINGS]
    pool = request.app[POOL]
    link = await links.get_link(pool, org_id, path_id(request, "link_id"))
    async with pool.acquire() as conn:
        minted = await mint(conn, link.id, recipients, length=settings.code_length)
    request.app[METRICS].codes_minted.inc(minted.minted)
    prefix = settings.short_domain + "/"
    return web.json_response(
        {
            "link_id": link.id,
            "minted": minted.minted,
            "reused": minted.reused,
            "codes": [
                {"recipient": r, "code": code, "short_url": prefix + code}
                for r, code in zip(minted.recipients, minted.codes, strict=True)
            ],
        },
        dumps=dumps,
    )
