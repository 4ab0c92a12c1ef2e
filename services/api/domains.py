"""Short domains of organisations (operator), and the organisation's switches for DLT (operator):
the header in the path of its links, and the check of links against its DLT whitelist.

A change is recorded in the audit trail and announced to the redirectors (`domains` on Redis
pub/sub), which reload their table of hosts; if Redis cannot take the message they reload it
within `LOCAL_CACHE_TTL_S` anyway, so the change is not refused for that.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from services.api.auth import require_operator
from services.api.bodies import DomainAdd, OrgSwitch
from services.api.body import decode
from services.api.context import REDIS, SETTINGS
from services.api.errors import dumps
from services.api.orgs import as_operator, org_list, query_ticket
from shared import audit, domains, orgs
from shared.errors import DependencyError
from shared.link_cache import domains_changed
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)


list_domains = org_list("list_domains", domains.list_domains, "short domains")


async def add_domain(request: web.Request) -> web.Response:
    """Operator: register a short domain for an organisation (idempotent)."""
    await require_operator(request)
    body = await decode(request, DomainAdd)
    settings = request.app[SETTINGS]
    added = await as_operator(
        request,
        domains.add_domain,
        body.domain,
        default=body.default,
        move=body.move,
        longest_link=domains.longest_link(settings),
        global_domain=settings.links.short_domain,
        ticket=body.ticket,
    )
    await _announce(request)
    return web.json_response(added, status=201, dumps=dumps)


async def remove_domain(request: web.Request) -> web.Response:
    """Operator: remove a short domain; its links there answer 404 from then on."""
    await require_operator(request)
    domain = request.match_info["domain"]
    removed = await as_operator(
        request, domains.remove_domain, domain, ticket=query_ticket(request)
    )
    await _announce(request)
    return web.json_response(removed, dumps=dumps)


async def set_header_in_path(request: web.Request) -> web.Response:
    """Operator: whether an organisation's short links carry the DLT header in their path."""
    await require_operator(request)
    body = await decode(request, OrgSwitch)
    settings = request.app[SETTINGS]
    room = domains.header_room(domains.longest_link(settings), settings.links.short_domain)
    before = room if body.enabled else None
    return await _switch(request, body, "header_in_path", "org.header_in_path", before)


async def set_whitelist_check(request: web.Request) -> web.Response:
    """Operator: whether rendering refuses links missing from the organisation's whitelist."""
    await require_operator(request)
    body = await decode(request, OrgSwitch)
    return await _switch(request, body, "dlt_whitelist_check", "org.whitelist_check")


async def _switch(
    request: web.Request,
    body: OrgSwitch,
    switch: str,
    action: audit.Action,
    before: Callable[[asyncpg.Connection, int], Awaitable[None]] | None = None,
) -> web.Response:
    org = await as_operator(
        request, orgs.switch, switch, body.enabled, ticket=body.ticket, action=action,
        before=before,
    )  # fmt: skip
    return web.json_response(org, dumps=dumps)


async def _announce(request: web.Request) -> None:
    try:
        with redis_errors("telling the redirectors of a domain change"):
            await domains_changed(request.app[REDIS])
    except DependencyError as exc:
        log.warning("redirectors not told of a domain change", extra={"error": str(exc)})
