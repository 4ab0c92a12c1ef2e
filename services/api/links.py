"""Tracked links of a campaign, and bulk minting of their per-recipient short codes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

import redis.asyncio as aioredis
from aiohttp import web
from msgspec import UNSET

from services.api.auth import require_org
from services.api.bodies import LinkChange, LinkCreate, Recipients
from services.api.body import decode, page, paged, path_id
from services.api.context import GATE, METRICS, POOL, REDIS, SETTINGS, recipient_vault
from services.api.errors import dumps
from shared import links, orgs
from shared.campaigns import get_campaign
from shared.domains import link_prefix
from shared.errors import DependencyError
from shared.link_cache import CodeRow, cache_codes, invalidate_link
from shared.minting import mint
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)

INVALIDATE_AGAIN_S = 2.0
"""Delay of the second cache drop after a link change, seconds."""
_pending: set[asyncio.Task[None]] = set()


async def create_link(request: web.Request) -> web.Response:
    """A link to a destination in the campaign: 201 when created; 200 when a resend reuses the
    link of the campaign it resends (its recipients keep their codes). 409 `tracking_disabled`
    while the organisation's link tracking is off."""
    org_id = await require_org(request)
    body = await decode(request, LinkCreate)
    pool = request.app[POOL]
    campaign = await get_campaign(pool, org_id, path_id(request, "campaign_id"))
    async with pool.acquire() as conn, conn.transaction():
        await orgs.require_tracking(conn, org_id)
        link, created = await links.add_link(
            conn,
            campaign,
            body.destination,
            expires_at=body.expires_at,
            fallback_url=body.fallback_url,
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


async def update_link(request: web.Request) -> web.Response:
    """Change a link whose codes are already out: its destination (a wrong URL in a sent SMS),
    `disabled`, `expires_at` or `fallback_url` (null clears those two). Every redirector sees
    the change at once (Redis entry dropped, pub/sub message to every process)."""
    org_id = await require_org(request)
    body = await decode(request, LinkChange)
    link_id = path_id(request, "link_id")
    # Null means "no change" for the two that cannot be cleared, and clears the other two.
    given = {name: getattr(body, name) for name in links.CHANGEABLE}
    changes = {
        name: value
        for name, value in given.items()
        if value is not UNSET and (value is not None or name in ("expires_at", "fallback_url"))
    }
    pool = request.app[POOL]
    link = await links.update_link(pool, org_id, link_id, changes)
    await _invalidate(request.app[REDIS], link.id)
    return web.json_response(link, dumps=dumps)


async def _invalidate(redis: aioredis.Redis, link_id: int) -> None:
    """Drop the link from every cache now, and once more a little later: a redirector that read
    the old row just before the change may write it back to Redis after the first drop."""
    try:
        with redis_errors("telling the redirectors of a link change"):
            await invalidate_link(redis, link_id)
    except DependencyError as exc:
        raise DependencyError(
            "the change is saved, but the redirectors' cache could not be told;"
            " send the same request again"
        ) from exc

    async def again() -> None:
        await asyncio.sleep(INVALIDATE_AGAIN_S)
        with suppress(DependencyError), redis_errors("telling the redirectors again"):
            await invalidate_link(redis, link_id)

    task = asyncio.create_task(again())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def cache_minted(app: web.Application, rows: list[CodeRow]) -> None:
    """Put committed codes in the redirectors' Redis cache and filters (`cache_codes`). A
    failure is logged, not raised: the codes work all the same (found through Postgres)."""
    try:
        await cache_codes(app[REDIS], rows, app[SETTINGS].links.code_cache_ttl_s)
    except DependencyError as exc:
        log.warning("minted codes not cached", extra={"codes": len(rows), "error": str(exc)})


async def add_recipients(request: web.Request) -> web.Response:
    """One short code per recipient on the link, minted in bulk (COPY); recipients that have a
    code already keep it. Up to 100,000 recipients per request, a heavy request (at most
    `API_ORG_CONCURRENCY` of an organisation at once). 409 `tracking_disabled` while the
    organisation's link tracking is off."""
    org_id = await require_org(request)
    with request.app[GATE].enter(org_id):  # up to 100,000 codes: seconds of a connection
        recipients = (await decode(request, Recipients)).recipients
        settings = request.app[SETTINGS]
        pool = request.app[POOL]
        link = await links.get_link(pool, org_id, path_id(request, "link_id"))
        prefix = await link_prefix(pool, link, settings.links.short_domain)
        async with pool.acquire() as conn, conn.transaction():
            await orgs.require_tracking(conn, org_id)
            minted = await mint(
                conn,
                link.id,
                recipients,
                length=settings.links.code_length,
                vault=recipient_vault(request, org_id),
            )
    request.app[METRICS].codes_minted.inc(minted.minted)
    await cache_minted(request.app, minted.code_rows(link.id))
    return web.json_response(
        {
            "link_id": link.id,
            "minted": minted.minted,
            "reused": minted.reused,
            "codes": [
                {"recipient": r, "code": code, "short_url": prefix.url(code)}
                for r, code in zip(minted.recipients, minted.codes, strict=True)
            ],
        },
        dumps=dumps,
    )
