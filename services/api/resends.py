"""Resend to non-clickers: one call makes a resend campaign whose audience is a campaign's
recipients who did not click (or who did not open one of its links), and renders its messages.

`POST /v1/campaigns/{id}/resends` checks the message as rendering does (the DLT rules, the
whitelist, the tracking switch: 409 `tracking_disabled` while it is off), creates the resend
(kind `resend`, the campaign as its parent, its short domain and DLT header), stores its
audience, and answers the first `limit` messages. `GET /v1/campaigns/{id}/messages` renders any
page of them again, in recipient order. Each link in the values must be a live link of the
campaign (or of what it resends): every recipient gets the code they were sent the first time,
nothing is minted, and a recipient without a code on one of those links is left out. How its
clicks are reported: `shared.resends`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from services.api import dlt
from services.api.auth import require_org
from services.api.bodies import RenderBatchRequest, ResendCreate
from services.api.body import decode, path_id
from services.api.clickers import recipient_page
from services.api.context import GATE, POOL, recipient_vault
from services.api.errors import dumps
from services.api.render import Job, Message, Tracked, check_message, job_of, measured, render_one
from shared import clickers, resends
from shared.campaigns import Campaign, create_campaign, get_campaign, link_lineage
from shared.errors import InvalidInputError, NotFoundError
from shared.links import find_live, get_link
from shared.orgs import require_tracking


async def create_resend(request: web.Request) -> web.Response:
    """A resend of the campaign to its non-clickers (or a link's non-openers): the new
    campaign, its audience and its first messages. A heavy request (its audience can be a
    million recipients): at most `API_ORG_CONCURRENCY` of an organisation at once."""
    org_id = await require_org(request)
    with request.app[GATE].enter(org_id):
        parent = await get_campaign(request.app[POOL], org_id, path_id(request, "campaign_id"))
        body = await decode(request, ResendCreate)  # after the 404: another's campaign is none
        return await _create_resend(request, org_id, parent, body)


async def _create_resend(
    request: web.Request, org_id: int, parent: Campaign, body: ResendCreate
) -> web.Response:
    pool = request.app[POOL]
    source = await _audience_source(request, parent, body.link_id)
    job = await job_of(request, org_id, _spec(body, parent.id))
    await _tracked(request, job)
    check_message(job, Message(None, body.values))
    lineage = await link_lineage(pool, parent)
    urls, links = [], []
    for _, found in dlt.slot_urls(body.values):
        live = await find_live(pool, lineage, found.url)
        if live is None:
            raise InvalidInputError(
                f"{found.url} is not a live link of campaign {parent.id}: a resend carries"
                " the codes its recipients were sent (a new link needs a new campaign)",
                code="link_not_in_campaign",
            )
        if found.url not in urls:
            urls.append(found.url)
            links.append(live.id)
    async with pool.acquire() as conn, conn.transaction():
        await require_tracking(conn, org_id)  # switched off meanwhile: 409, nothing made
        campaign_id = await create_campaign(
            conn, org_id, body.name, "resend", body.channel or parent.channel,
            parent_id=parent.id, short_domain=parent.short_domain,
        )  # fmt: skip
        made = resends.Resend(
            campaign_id, parent.id, body.link_id, body.template, body.slot_types, body.values,
            body.var_limit, urls, links, 0,
        )  # fmt: skip
        audience = await resends.create_audience(conn, made, *source)
    made = replace(made, audience=audience)
    items, next_after = await _messages(request, job, made, "", body.limit)
    answer = {
        "campaign": await get_campaign(pool, org_id, campaign_id),
        "resend": await resends.counts(pool, made),
        "messages": items,
        "next_after": next_after,
    }
    return web.json_response(answer, status=201, dumps=dumps)


async def resend_messages(request: web.Request) -> web.Response:
    """A page of a resend's messages (`?after=<recipient>&limit=`), rendered again."""
    org_id = await require_org(request)
    pool = request.app[POOL]
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    after, limit = recipient_page(request)
    made = await resends.get_resend(pool, campaign.id)
    if made is None:
        raise NotFoundError(f"campaign {campaign.id} is not a resend to non-clickers")
    spec = RenderBatchRequest(
        template=made.template, messages=[], campaign_id=made.parent_id,
        var_limit=made.var_limit, slot_types=made.slot_types,
    )  # fmt: skip
    job = await job_of(request, org_id, spec)
    await _tracked(request, job)
    items, next_after = await _messages(request, job, made, after, limit)
    return web.json_response({"items": items, "next_after": next_after}, dumps=dumps)


async def _audience_source(
    request: web.Request, parent: Campaign, link_id: int | None
) -> tuple[str, int, list[int]]:
    """Who the resend goes to, as `resends.create_audience` takes it: the non-openers of the
    parent's link `link_id`; else, for a resend to non-clickers, its audience who did not click;
    else the parent's non-clickers."""
    pool = request.app[POOL]
    if link_id is not None:
        link = await get_link(pool, parent.org_id, link_id)
        if link.campaign_id != parent.id:
            raise InvalidInputError(
                f"link {link.id} is not a link of campaign {parent.id}", code="invalid_link"
            )
        return clickers.non_clickers_sql(("link", link.id), 1), link.id, [link.id]
    earlier = await resends.get_resend(pool, parent.id) if parent.kind == "resend" else None
    if earlier is not None:
        return resends.non_clickers_sql(), parent.id, earlier.links
    links = await clickers.scope_links(pool, ("campaign", parent.id))
    return clickers.non_clickers_sql(("campaign", parent.id), len(links)), parent.id, links


async def _tracked(request: web.Request, job: Job) -> None:
    """409 `tracking_disabled` while the organisation's tracking is off: no code to reuse."""
    if not job.tracking:
        async with request.app[POOL].acquire() as conn:
            await require_tracking(conn, job.org_id)


def _spec(body: ResendCreate, parent_id: int) -> RenderBatchRequest:
    """What rendering needs of the request: the parent's short domain and header, which the
    resend takes."""
    return RenderBatchRequest(
        template=body.template, messages=[], campaign_id=parent_id,
        var_limit=body.var_limit, slot_types=body.slot_types,
    )  # fmt: skip


async def _messages(
    request: web.Request, job: Job, made: resends.Resend, after: str, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the resend's rendered messages and the `after` of the next one (a pseudonym).
    An erased recipient gets no message."""
    if limit == 0:
        return [], (after if made.audience else None)
    vault = recipient_vault(request, job.org_id)
    page = await resends.message_codes(request.app[POOL], vault, made, after=after, limit=limit)
    items = []
    for _, recipient, codes in page:
        if recipient is None or len(codes) != len(made.links):
            continue  # erased since: nothing leads to them any more
        tracked: Tracked = {
            (url, recipient): (link_id, code)
            for url, link_id, code in zip(made.urls, made.links, codes, strict=True)
        }
        done = render_one(job, Message(recipient, made.values), tracked)
        items.append({"recipient": recipient, **measured(done)})
    return items, (page[-1][0] if len(page) == limit else None)
