"""Organisations (operator), their link-tracking switch (operator), API keys, and the operators'
audit trail (operator). Every operator action here takes an optional `ticket` (in the body, or
`?ticket=` on a DELETE) and is recorded under the credential's `OPERATOR_NAME`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import asdict
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from services.api.auth import caller, readable_org, require_operator, require_org
from services.api.bodies import ApiKeyCreate, LinkTracking, OrgCreate, OrgTimeZone
from services.api.body import decode, page, paged, path_id
from services.api.context import POOL, REDIS, SETTINGS
from services.api.errors import Handler, dumps
from shared import apikeys, audit, operator_actions, orgs
from shared.errors import DependencyError, InvalidInputError, NotFoundError
from shared.events import MAX_ID
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)
T = TypeVar("T")
_pending: set[asyncio.Task[None]] = set()


def operator_name(request: web.Request) -> str:
    """The name the operator credential is recorded under (`OPERATOR_NAME`)."""
    return request.app[SETTINGS].api.operator_name


def query_ticket(request: web.Request) -> str | None:
    """The `?ticket=` of a request without a body (a DELETE), checked."""
    return audit.clean_ticket(request.query.get("ticket"))


async def as_operator(
    request: web.Request,
    act: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    ticket: str | None,
    **options: Any,
) -> T:
    """What `act(pool, org_id, *args, operator=..., ticket=ticket, **options)`, an operator
    action of `shared` (`shared.operator_actions` and the like), returns for the organisation
    in the path, recorded in the audit trail under `OPERATOR_NAME`. `require_operator` first."""
    org_id = path_id(request, "org_id")
    operator = operator_name(request)
    return await act(request.app[POOL], org_id, *args, operator=operator, ticket=ticket, **options)


def org_list(
    name: str, read: Callable[[asyncpg.Pool, int], Awaitable[list[Any]]], what: str
) -> Handler:
    """A handler answering `{"items": read(pool, org_id)}` for the organisation in the path: to
    the operator for any organisation, to an API key for its own (another's is a 404,
    `readable_org`). `name` is the handler's name (its `operationId`), `what` the items."""

    async def handler(request: web.Request) -> web.Response:
        org_id = await readable_org(request)
        return web.json_response({"items": await read(request.app[POOL], org_id)}, dumps=dumps)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = (
        f"Operator: any organisation's {what}; an API key: its own (another's is 404)."
    )
    return handler


async def create_org(request: web.Request) -> web.Response:
    """Operator: a new organisation, link tracking off."""
    await require_operator(request)
    body = await decode(request, OrgCreate)
    org, _ = await operator_actions.create_org(
        request.app[POOL], body.name, operator=operator_name(request), ticket=body.ticket,
        key_name=None,
    )  # fmt: skip
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
    """Operator: switch an organisation's link tracking on or off. Off: nothing is minted any
    more, and every redirector stops serving the organisation's codes within seconds."""
    await require_operator(request)
    body = await decode(request, LinkTracking)
    org, link_ids = await as_operator(
        request, operator_actions.switch_tracking, body.enabled, ticket=body.ticket
    )
    log.info("link tracking switched", extra={"org_id": org.id, "enabled": body.enabled})
    await _tell_redirectors(request, org.id, link_ids)
    return web.json_response(org, dumps=dumps)


async def set_time_zone(request: web.Request) -> web.Response:
    """Operator: the time zone of an organisation's reports (their hours and days)."""
    await require_operator(request)
    body = await decode(request, OrgTimeZone)
    org = await as_operator(
        request, operator_actions.set_time_zone, body.time_zone, ticket=body.ticket
    )
    return web.json_response(org, dumps=dumps)


async def _tell_redirectors(request: web.Request, org_id: int, link_ids: list[int]) -> None:
    """Drop the organisation's links from every cache now, and again a moment later."""
    redis = request.app[REDIS]
    try:
        with redis_errors("telling the redirectors of a tracking switch"):
            await operator_actions.forget_org(redis, org_id, link_ids)
    except DependencyError as exc:
        raise DependencyError(
            "the switch is saved, but the redirectors' cache could not be told;"
            " send the same request again"
        ) from exc

    async def again() -> None:
        await asyncio.sleep(operator_actions.FORGET_AGAIN_S)
        with suppress(DependencyError), redis_errors("telling the redirectors again"):
            await operator_actions.forget_org(redis, org_id, link_ids)

    task = asyncio.create_task(again())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def issue_key(request: web.Request) -> web.Response:
    """Operator: an API key for an organisation (its first, typically); shown once."""
    await require_operator(request)
    body = await decode(request, ApiKeyCreate)
    record, key = await as_operator(
        request, operator_actions.issue_key, _key_name(body), ticket=body.ticket
    )
    return _key_created(record, key)


async def withdraw_key(request: web.Request) -> web.Response:
    """Operator: revoke one of an organisation's keys (a leaked key, on the customer's word)."""
    await require_operator(request)
    key_id = path_id(request, "key_id")
    record = await as_operator(
        request, operator_actions.revoke_key, key_id, ticket=query_ticket(request)
    )
    log.info("API key revoked", extra={"org_id": record.org_id, "key_id": record.id})
    return web.json_response(asdict(record), dumps=dumps)


async def list_audit(request: web.Request) -> web.Response:
    """Operator: the audit trail, oldest first (`?org_id=` for one organisation)."""
    await require_operator(request)
    after, limit = page(request)
    raw = request.query.get("org_id")
    org_id = int(raw) if raw is not None and raw.isascii() and raw.isdigit() else 0
    if raw is not None and not 0 < org_id <= MAX_ID:
        raise InvalidInputError("org_id must be an organisation id", code="invalid_query")
    found = await audit.list_entries(
        request.app[POOL], org_id=org_id or None, after_id=after, limit=limit
    )
    return web.json_response(paged(found, limit), dumps=dumps)


async def create_key(request: web.Request) -> web.Response:
    """An API key: another key for its own organisation; shown once."""
    org_id = await require_org(request)
    body = await decode(request, ApiKeyCreate)
    if body.ticket is not None:
        raise InvalidInputError(
            "ticket is for operators only", code="unknown_field", field="ticket"
        )
    record, key = await apikeys.create_api_key(request.app[POOL], org_id, _key_name(body))
    return _key_created(record, key)


def _key_name(body: ApiKeyCreate) -> str:
    name = body.name
    if name is not None and not name.strip():
        raise InvalidInputError("name must not be empty", code="invalid_field", field="name")
    return name or "api key"


def _key_created(record: apikeys.ApiKey, key: str) -> web.Response:
    log.info("API key created", extra={"org_id": record.org_id, "key_id": record.id})
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
