"""Who is calling: an organisation's API key, or the operator.

Both come as `Authorization: Bearer <credential>`. An API key acts for its organisation only; the
operator credential (setting OPERATOR_TOKEN) creates organisations, switches link tracking and
issues first keys, and cannot act inside an organisation. Credentials are never logged.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass

from aiohttp import web

from services.api.body import path_id
from services.api.context import GATE, POOL, SETTINGS
from services.api.errors import Handler
from shared import orgs
from shared.apikeys import KEY_PREFIX, org_of_key
from shared.errors import AuthError, ForbiddenError, NotFoundError


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller: the operator, or an organisation."""

    operator: bool
    org_id: int | None


CALLER = web.RequestKey("caller", Caller)
"""Request item: the `Caller` once the request's credential was accepted (the rate limits and
the per-organisation caps read it)."""


def bearer_credential(header: str) -> str | None:
    """The credential of an `Authorization` header as authentication reads it (scheme in any
    case, surrounding spaces dropped), or None when it is not a bearer credential. The one
    normalisation: the rate limits count by what it returns, so that `Bearer  KEY` with one
    more space is the same caller."""
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def _bearer(request: web.Request) -> str:
    credential = bearer_credential(request.headers.get("Authorization", ""))
    if credential is None:
        raise AuthError("send an API key as 'Authorization: Bearer <key>'")
    return credential


def _is_operator(request: web.Request, credential: str) -> bool:
    token = request.app[SETTINGS].api.operator_token.reveal()
    return bool(token) and hmac.compare_digest(credential.encode(), token.encode())


async def caller(request: web.Request) -> Caller:
    """The caller, or `AuthError` for a missing, unknown or revoked credential."""
    if CALLER in request:  # known already (`one_turn` asked first)
        known: Caller = request[CALLER]
        return known
    credential = _bearer(request)
    if _is_operator(request, credential):
        who = request[CALLER] = Caller(operator=True, org_id=None)
        return who
    if credential.startswith(KEY_PREFIX):
        org_id = await org_of_key(request.app[POOL], credential)
        if org_id is not None:
            who = request[CALLER] = Caller(operator=False, org_id=org_id)
            return who
    raise AuthError("the credential is not a valid API key (unknown or revoked)")


async def require_org(request: web.Request) -> int:
    """The organisation of the calling API key; the operator gets `ForbiddenError`."""
    who = await caller(request)
    if who.org_id is None:
        raise ForbiddenError("the operator credential cannot act inside an organisation")
    return who.org_id


def one_turn(handler: Handler) -> Handler:
    """A report read of the caller's organisation, run in its turn (`OrgGate.turn`): at most
    `API_ORG_READS` of one organisation's at once in this process, the next ones wait."""

    @functools.wraps(handler)
    async def in_turn(request: web.Request) -> web.StreamResponse:
        org_id = await require_org(request)
        async with request.app[GATE].turn(org_id):
            return await handler(request)

    return in_turn


async def readable_org(request: web.Request) -> int:
    """The organisation of the path's `org_id`, if the caller may read it: the operator any
    organisation, an API key its own (another's is a 404, as if it did not exist)."""
    who = await caller(request)
    org_id = path_id(request, "org_id")
    if not who.operator and who.org_id != org_id:
        raise NotFoundError(f"organisation {org_id} does not exist")
    await orgs.get_org(request.app[POOL], org_id)
    return org_id


def org_of(request: web.Request) -> int:
    """The organisation `require_org` accepted for this request (call that first)."""
    who = request[CALLER]
    assert who.org_id is not None, "require_org was not called"
    return who.org_id


async def require_operator(request: web.Request) -> None:
    """Pass only the operator; an organisation's key gets `ForbiddenError`."""
    if not request.app[SETTINGS].api.operator_token.reveal():
        raise ForbiddenError("the operator API is off: set OPERATOR_TOKEN, or use the CLI")
    who = await caller(request)
    if not who.operator:
        raise ForbiddenError("only the operator may do this")
