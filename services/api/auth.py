"""Who is calling: an organisation's API key, or the operator.

Both come as `Authorization: Bearer <credential>`. An API key acts for its organisation only; the
operator credential (setting OPERATOR_TOKEN) creates organisations, switches link tracking and
issues first keys, and cannot act inside an organisation. Credentials are never logged.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from services.api.context import POOL, SETTINGS
from shared.apikeys import KEY_PREFIX, org_of_key
from shared.errors import AuthError, ForbiddenError


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller: the operator, or an organisation."""

    operator: bool
    org_id: int | None


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError("send an API key as 'Authorization: Bearer <key>'")
    return credential.strip()


def _is_operator(request: web.Request, credential: str) -> bool:
    token = request.app[SETTINGS].api.operator_token.reveal()
    return bool(token) and hmac.compare_digest(credential.encode(), token.encode())


async def caller(request: web.Request) -> Caller:
    """The caller, or `AuthError` for a missing, unknown or revoked credential."""
    credential = _bearer(request)
    if _is_operator(request, credential):
        return Caller(operator=True, org_id=None)
    if credential.startswith(KEY_PREFIX):
        org_id = await org_of_key(request.app[POOL], credential)
        if org_id is not None:
            return Caller(operator=False, org_id=org_id)
    raise AuthError("the credential is not a valid API key (unknown or revoked)")


async def require_org(request: web.Request) -> int:
    """The organisation of the calling API key; the operator gets `ForbiddenError`."""
    who = await caller(request)
    if who.org_id is None:
        raise ForbiddenError("the operator credential cannot act inside an organisation")
    return who.org_id


async def require_operator(request: web.Request) -> None:
    """Pass only the operator; an organisation's key gets `ForbiddenError`."""
    if not request.app[SETTINGS].api.operator_token.reveal():
        raise ForbiddenError("the operator API is off: set OPERATOR_TOKEN, or use the CLI")
    who = await caller(request)
    if not who.operator:
        raise ForbiddenError("only the operator may do this")
