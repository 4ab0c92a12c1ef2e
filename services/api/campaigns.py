"""Campaigns of the calling organisation."""

from __future__ import annotations

from aiohttp import web

from services.api.auth import require_org
from services.api.bodies import CampaignCreate
from services.api.body import decode, page, paged, path_id
from services.api.context import POOL
from services.api.errors import dumps
from shared import campaigns


async def create_campaign(request: web.Request) -> web.Response:
    """A new campaign; a resend or recurrence may name its parent campaign."""
    org_id = await require_org(request)
    body = await decode(request, CampaignCreate)
    pool = request.app[POOL]
    campaign_id = await campaigns.create_campaign(
        pool,
        org_id,
        body.name,
        body.kind,
        body.channel or "sms",
        parent_id=body.parent_id,
        dlt_header=body.dlt_header,
        short_domain=body.short_domain,
    )
    created = await campaigns.get_campaign(pool, org_id, campaign_id)
    return web.json_response(created, status=201, dumps=dumps)


async def list_campaigns(request: web.Request) -> web.Response:
    """The organisation's campaigns, by id (`?after=&limit=`)."""
    org_id = await require_org(request)
    after, limit = page(request)
    found = await campaigns.list_campaigns(request.app[POOL], org_id, after_id=after, limit=limit)
    return web.json_response(paged(found, limit), dumps=dumps)


async def get_campaign(request: web.Request) -> web.Response:
    """One of the organisation's campaigns (another organisation's is 404)."""
    org_id = await require_org(request)
    found = await campaigns.get_campaign(request.app[POOL], org_id, path_id(request, "campaign_id"))
    return web.json_response(found, dumps=dumps)
