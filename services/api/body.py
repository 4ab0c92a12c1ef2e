"""Reading requests: the JSON object of a body, typed fields, ids in paths and pagination."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, overload

import orjson
from aiohttp import web

from services.api.errors import BadRequestError
from shared.errors import InvalidInputError, NotFoundError

MAX_ID = 2**63 - 1
MAX_PAGE = 1000
_MISSING = object()


async def json_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The body as a JSON object; unknown fields are refused so a typo is not silently ignored."""
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequestError("the body must be a JSON object", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInputError(
            f"unknown field(s): {', '.join(unknown)};"
            f" expected some of {', '.join(sorted(allowed))}",
            code="unknown_field",
        )
    return body


def _get(body: dict[str, Any], name: str, required: bool) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING and required:
        raise InvalidInputError(f"{name} is required", code="missing_field", field=name)
    return None if value is _MISSING else value


def _wrong(name: str, what: str) -> InvalidInputError:
    return InvalidInputError(f"{name} must be {what}", code="invalid_field", field=name)


@overload
def text_field(body: dict[str, Any], name: str) -> str: ...
@overload
def text_field(body: dict[str, Any], name: str, *, required: Literal[False]) -> str | None: ...
def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string field (None when absent and not required)."""
    value = _get(body, name, required)
    if value is not None and not isinstance(value, str):
        raise _wrong(name, "a string")
    return value


@overload
def int_field(body: dict[str, Any], name: str) -> int: ...
@overload
def int_field(body: dict[str, Any], name: str, *, required: Literal[False]) -> int | None: ...
def int_field(body: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    """A positive 64-bit integer field (None when absent and not required)."""
    value = _get(body, name, required)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID
    ):
        raise _wrong(name, "a positive integer")
    return value


def bool_field(body: dict[str, Any], name: str) -> bool:
    """A required boolean field."""
    value = _get(body, name, True)
    if not isinstance(value, bool):
        raise _wrong(name, "true or false")
    return value


def time_field(body: dict[str, Any], name: str) -> datetime | None:
    """An optional RFC 3339 timestamp with a time zone (`2026-12-31T18:30:00Z`)."""
    value = _get(body, name, False)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _wrong(name, "an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _wrong(name, "an RFC 3339 timestamp, e.g. 2026-12-31T18:30:00Z") from None
    if parsed.tzinfo is None:
        raise _wrong(name, "a timestamp with a time zone (Z or +05:30)")
    return parsed


def list_field(body: dict[str, Any], name: str, *, max_items: int) -> list[Any]:
    """A required JSON array of at most `max_items` items."""
    value = _get(body, name, True)
    if not isinstance(value, list):
        raise _wrong(name, "an array")
    if len(value) > max_items:
        raise InvalidInputError(
            f"{name} holds {len(value)} items, more than the {max_items} one request may carry",
            code="too_many_items",
            field=name,
        )
    return value


def path_id(request: web.Request, name: str) -> int:
    """An id from the path (the route only matches digits); out of range is simply not found."""
    value = int(request.match_info[name])
    if not 0 < value <= MAX_ID:
        raise NotFoundError(f"{name.removesuffix('_id')} {value} does not exist")
    return value


def page(request: web.Request) -> tuple[int, int]:
    """(after_id, limit) from `?after=&limit=` (defaults 0 and 100, limit at most 1000)."""
    try:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InvalidInputError(
            "after and limit must be whole numbers", code="invalid_query"
        ) from None
    if not 0 <= after <= MAX_ID or not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(
            f"after must be 0 or more and limit between 1 and {MAX_PAGE}", code="invalid_query"
        )
    return after, limit


def paged(items: list[Any], limit: int) -> dict[str, Any]:
    """`{"items": [...], "next_after": id or null}` for keyset pagination."""
    return {"items": items, "next_after": items[-1].id if len(items) == limit else None}
