"""Organisations (operator), their link-tracking switch (operator), and API keys."""

from __future__ import annotations

import logging
from dataclasses import asdict

from aiohttp import web

from services.api.auth import caller, require_operator, require_org
from services.api.bodies import ApiKeyCreate, LinkTracking, OrgCreate
from services.api.body import decode, page, paged, path_id
from services.api.context import POOL
from services.api.errors import dumps
from shared import apikeys, orgs
from shared.errors import InvalidInputError, NotFoundError

log = logging.getLogger(__name__)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/orgs", create_org)
    router.add_get("/v1/orgs", list_orgs)
    router.add_get(r"/v1/orgs/{org_id:\d+}", get_org)
    router.add_put(r"/v1/orgs/{org_id:\d+}/link-tracking", set_link_tracking)
    router.add_post(r"/v1/orgs/{org_id:\d+}/api-keys", issue_key)
    router.add_get("/v1/api-keys", list_keys)
    router.add_post("/v1/api-keys", create_key)
    router.add_delete(r"/v1/api-keys/{key_id:\d+}", revoke_key)


async def create_org(request: web.Request) -> web.Response:
    """Operator: a new organisation, link tracking off."""
    await require_operator(request)
    body = await decode(request, OrgCreate)
    pool = request.app[POOL]
    org = await orgs.get_org(pool, await orgs.create_org(pool, body.name))
    log.info("organisation created", extra={"org_id": org.id})
    return web.json_response(org, status=201, dumps=dumps)


async def list_orgs(request: web.Request) -> web.Response:
    """Operator: every organisation, by id."""
    await require_operator(request)
    after, limit = page(request)
    found = await orgs.list_orgs(request.app[POOL], after_id=after, limit=limit)
    return web.json_response(paged(found, limit), dumps=dumps)


async def get_org(request: web.Request) -> web.Response:
    """Operator: any organisation; an API key: its own (another's is 404)."""
    who = await caller(request)
    org_id = path_id(request, "org_id")
    if not who.operator and who.org_id != org_id:
        raise NotFoundError(f"organisation {org_id} does not exist")
    return web.json_response(await orgs.get_org(request.app[POOL], org_id), dumps=dumps)


async def set_link_tracking(request: web.Request) -> web.Response:
    """Operator: switch an organisation's link tracking on or off."""
    await require_operator(request)
    enabled = (await decode(request, LinkTracking)).enabled
    org = await orgs.set_link_tracking(request.app[POOL], path_id(request, "org_id"), enabled)
    log.info("link tracking switched", extra={"org_id": org.id, "enabled": enabled})
    return web.json_response(org, dumps=dumps)


async def issue_key(request: web.Request) -> web.Response:
    """Operator: an API key for an organisation (its first, typically); shown once."""
    await require_operator(request)
    body = await decode(request, ApiKeyCreate)
    pool = request.app[POOL]
    org = await orgs.get_org(pool, path_id(request, "org_id"))
    return await _new_key(request, org.id, body)


async def create_key(request: web.Request) -> web.Response:
    """An API key: another key for its own organisation; shown once."""
    org_id = await require_org(request)
    return await _new_key(request, org_id, await decode(request, ApiKeyCreate))


async def _new_key(request: web.Request, org_id: int, body: ApiKeyCreate) -> web.Response:
    name = body.name
    if name is not None and not name.strip():
        raise InvalidInputError("name must not be empty", code="invalid_field", field="name")
    name = name or "api key"
    record, key = await apikeys.create_api_key(request.app[POOL], org_id, name)
    log.info("API key created", extra={"org_id": org_id, "key_id": record.id})
    return web.json_response(
        {**asdict(record), "key": key},
        status=201,
        dumps=dumps,
        headers={"Cache-Control": "no-store"},
    )


async def list_keys(request: web.Request) -> web.Response:
    """An API key: its organisation's keys (never the keys themselves)."""
    org_id = await require_org(request)
    found = await apikeys.list_api_keys(request.app[POOL], org_id)
    return web.json_response({"items": found}, dumps=dumps)


async def revoke_key(request: web.Request) -> web.Response:
    """An API key: revoke one of its organisation's keys (itself included)."""
    org_id = await require_org(request)
    record = await apikeys.revoke_api_key(request.app[POOL], org_id, path_id(request, "key_id"))
    log.info("API key revoked", extra={"org_id": org_id, "key_id": record.id})
    return web.json_response(asdict(record), dumps=dumps)
