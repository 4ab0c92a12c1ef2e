"""Reading requests: a JSON body decoded into its type, ids in paths and pagination.

A body that breaks its type is refused with a 422 that says what is wrong, in the words of the
type itself: `name must be a string of 1 to 200 characters (got null)`. The error codes:
`missing_field`, `unknown_field`, `too_many_items` (an array over its limit), `invalid_field` (the
wrong JSON type, a malformed timestamp) or, for a value of the right type that breaks its field's
rule, the code the type names in `Body.rules` (`invalid_name`, `invalid_kind`...). A body that is
not a JSON object at all is a 400 `invalid_json`.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import inspect

from services.api.bodies import Body
from services.api.errors import BadRequestError
from shared.errors import InvalidInputError, NotFoundError
from shared.events import MAX_ID

MAX_PAGE = 1000
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")
_FIELD = re.compile(r"Object (?P<how>missing required|contains unknown) field `(?P<name>[^`]*)`")
_TYPE = re.compile(r"Expected `[^`]+`, got `(?P<got>[^`]+)`")

B = TypeVar("B", bound=Body)


async def decode(request: web.Request, body_type: type[B]) -> B:
    """The request's JSON body as `body_type`, or a 400/422 that says what is wrong."""
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        refusal = refused(body_type, str(exc))
    except msgspec.DecodeError:
        refusal = None
    if refusal is None:
        raise BadRequestError("the body must be a JSON object", code="invalid_json")
    raise refusal


def decode_item(raw: msgspec.Raw, item_type: type[B], noun: str) -> B:
    """One item of a body's array (a batch's message) as `item_type`, or `InvalidInputError`."""
    try:
        return msgspec.json.decode(raw, type=item_type)
    except msgspec.ValidationError as exc:
        refusal = refused(item_type, str(exc))
    if refusal is None:
        refusal = InvalidInputError(
            f"{noun} must be {_describe(inspect.type_info(item_type))}", code="invalid_field"
        )
    raise refusal


def refused(body_type: type[Body], message: str) -> InvalidInputError | None:
    """The error to answer for msgspec's `ValidationError` message (`Expected `str`, got `int`
    - at `$.values[0]``), or None when the body is not an object at all. msgspec is pinned and
    tests/unit/test_api_body.py holds the answers, so a change of its wording is caught."""
    what, _, path = message.partition(" - at `$")
    path = path.removesuffix("`")
    steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
    owner, info = _walk(body_type, steps)
    field = _FIELD.fullmatch(what)
    if field is not None:
        prefix = _label(steps, "") + "." if steps else ""
        if field["how"] == "missing required":
            return InvalidInputError(
                f"{prefix}{field['name']} is required",
                code="missing_field",
                field=field["name"],
            )
        known = ", ".join(f.encode_name for f in _fields(info))
        return InvalidInputError(
            f"unknown field {prefix}{field['name']}; expected some of {known}",
            code="unknown_field",
        )
    if not steps:
        return None
    name = next(step for step in reversed(steps) if isinstance(step, str))
    index = next((step for step in reversed(steps) if isinstance(step, int)), None)
    context: dict[str, int | str] = {"field": name}
    if index is not None:
        context["index"] = index
    got = _TYPE.fullmatch(what)
    detail = f"{_label(steps, name)} must be {_describe(info)}"
    if got is not None:
        return InvalidInputError(f"{detail} (got {got['got']})", code="invalid_field", **context)
    if what.startswith("Expected `array` of length <="):
        return InvalidInputError(detail, code="too_many_items", **context)
    if "datetime" in what:  # not a timestamp, or one without a zone: the wrong form of value
        return InvalidInputError(detail, code="invalid_field", **context)
    code = owner.rules.get(name, "invalid_field") if owner is not None else "invalid_field"
    return InvalidInputError(detail, code=code, **context)


def _walk(body_type: type[Body], steps: list[str | int]) -> tuple[type[Body] | None, inspect.Type]:
    """The Struct that owns the last field on the path, and the type found at the path."""
    owner: type[Body] | None = body_type
    info: inspect.Type = inspect.type_info(body_type)
    for step in steps:
        info = _plain(info)
        if isinstance(step, str) and isinstance(info, inspect.StructType):
            owner = info.cls if issubclass(info.cls, Body) else None
            info = next(f.type for f in info.fields if f.encode_name == step)
        elif isinstance(step, int) and isinstance(info, inspect.ListType):
            info = info.item_type
    return owner, info


def _plain(info: inspect.Type) -> inspect.Type:
    """The type without its metadata, and without null when that is the only other choice."""
    while isinstance(info, inspect.Metadata):
        info = info.type
    if isinstance(info, inspect.UnionType):
        choices = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        if len(choices) == 1:
            return _plain(choices[0])
    return info


def _fields(info: inspect.Type) -> tuple[inspect.Field, ...]:
    info = _plain(info)
    return info.fields if isinstance(info, inspect.StructType) else ()


def _label(steps: list[str | int], name: str) -> str:
    """`values[2]` for the path `.values[2]`; `messages[0].values` and so on."""
    label = ""
    for step in steps:
        label += f"[{step}]" if isinstance(step, int) else f".{step}" if label else step
    return label or name


def _readable(pattern: str) -> str:
    """A pattern as a reader needs it: `(?!\\n)` only stops Python's `$` matching before a final
    newline (shared.campaigns.CHANNEL_PATTERN), which says nothing to a client."""
    return pattern.replace("(?!\\n)", "")


def _describe(info: inspect.Type) -> str:
    """What a value of the type is, in words: `a string of at most 2048 characters`."""
    if isinstance(info, inspect.Metadata):
        # A raw item, decoded on its own later, names its type in its schema.
        ref = str((info.extra_json_schema or {}).get("$ref", ""))
        if isinstance(info.type, inspect.RawType) and ref:
            return f"a {ref.rsplit('/', 1)[-1]} object"
        return _describe(info.type)
    if isinstance(info, inspect.UnionType):
        choices = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        nullable = len(choices) < len(info.types)
        return " or ".join(_describe(t) for t in choices) + (", or null" if nullable else "")
    if isinstance(info, inspect.StrType):
        return (
            "a string"
            + _sized(info.min_length, info.max_length, "character")
            + (f" matching {_readable(info.pattern)}" if info.pattern else "")
        )
    if isinstance(info, inspect.IntType):
        low, high = info.ge, info.le
        return f"a whole number from {low} to {high}" if low and high else "a whole number"
    if isinstance(info, inspect.BoolType):
        return "true or false"
    if isinstance(info, inspect.DateTimeType):
        return "a timestamp with a time zone (RFC 3339, e.g. 2026-12-31T18:30:00Z)"
    if isinstance(info, inspect.LiteralType):
        return "one of " + ", ".join(str(v) for v in info.values)
    if isinstance(info, inspect.ListType):
        sized = _sized(info.min_length, info.max_length, "item")
        return f"an array{sized}, each {_describe(info.item_type)}"
    if isinstance(info, inspect.StructType):
        return "an object with " + ", ".join(f.encode_name for f in info.fields)
    return "valid JSON"


def _sized(low: int | None, high: int | None, unit: str) -> str:
    if low and high:
        return f" of {low} to {high} {unit}s"
    if high:
        return f" of at most {high} {unit}s"
    if low:
        return f" of at least {low} {unit}{'s' if low > 1 else ''}"
    return ""


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
