"""Every error leaves the API as `{"error": code, "detail": message}` (plus context such as a
template `position`), with a 4xx status for the caller's mistakes and 5xx for ours."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from shared import db
from shared.errors import (
    AuthError,
    ClicktrackError,
    DependencyError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    QueryError,
    TrackingDisabledError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TooBusyError(ClicktrackError, code="rate_limited", retriable=True):
    """Too many of the organisation's heavy requests run at once: HTTP 429, Retry-After 1."""


_STATUS: tuple[tuple[type[ClicktrackError], int], ...] = (
    (InvalidInputError, 422),
    (NotFoundError, 404),
    (AuthError, 401),
    (TooBusyError, 429),
    (ForbiddenError, 403),
    (TrackingDisabledError, 409),
    (DependencyError, 503),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
}


class BadRequestError(InvalidInputError, code="bad_request"):
    """The request itself cannot be read (not JSON, not an object): HTTP 400."""


def dumps(value: Any) -> str:
    """JSON text of a response body (dataclasses and datetimes included)."""
    return orjson.dumps(value).decode()


def error_response(status: int, code: str, detail: str, **context: Any) -> web.Response:
    """The JSON error body every failure uses."""
    body = {"error": code, "detail": detail, **context}
    headers = {"WWW-Authenticate": 'Bearer realm="clicktrack"'} if status == 401 else None
    return web.json_response(body, status=status, dumps=dumps, headers=headers)


def route_of(request: web.Request) -> str:
    """The route template a request matched (`/v1/recipients/{recipient}`), never its path: a
    path can carry a recipient's phone number, which must not reach a log."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into a JSON error response; unexpected ones are logged, not shown."""
    try:
        with db.errors("the database is unavailable"):
            return await handler(request)
    except QueryError:
        # a statement Postgres refused is our bug: its text is for the log, not the caller
        log.exception("unexpected error", extra={"route": route_of(request)})
        return error_response(500, "internal_error", "unexpected error; see the API log")
    except ClicktrackError as exc:
        status = (
            400
            if isinstance(exc, BadRequestError)
            else next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
        )
        if status >= 500:
            log.warning("request failed", extra={"route": route_of(request), "error": exc.code})
        response = error_response(status, exc.code, exc.detail, **exc.context)
        if status == 429:
            response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unexpected error", extra={"route": route_of(request)})
        return error_response(500, "internal_error", "unexpected error; see the API log")
