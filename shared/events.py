"""The click event: the public contract of topic `clicks.v1`.

Key: the short code (UTF-8). Value: one JSON object, schema in `shared/schemas/click_event.v1.json`.
Evolution is additive only: new fields are optional, readers ignore fields they do not know, and a
breaking change is a new topic.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import uuid_utils

from shared.errors import EventError

SCHEMA_VERSION = 1
CAMPAIGN_KINDS = frozenset({"one_time", "recurring", "coupon_expiry_reminder", "resend"})


@dataclass(frozen=True, slots=True)
class ClickEvent:
    """One tap on a short link, as the redirector saw it."""

    event_id: str
    """UUIDv7 minted by the redirector; the key for deduplication downstream."""
    occurred_at: str
    """When the redirector answered, ISO 8601 in UTC with milliseconds (`...Z`)."""
    code: str
    """The short code that was requested."""
    link_id: int
    """The tracked link the code belongs to."""
    org_id: int
    """The organisation that owns the link."""
    campaign_id: int | None
    """The campaign of the link, if any."""
    campaign_kind: str | None
    """`one_time`, `recurring`, `coupon_expiry_reminder` or `resend`; null without a campaign."""
    channel: str
    """Delivery channel of the message that carried the link (`sms`, ...)."""
    recipient_id: str | None
    """The recipient the code was minted for, if the code is per recipient."""
    visitor_id: str
    """Who clicked, for unique counts: recipient, else first-party cookie, else IP+UA hash."""
    user_agent: str | None
    """The User-Agent header, cut to 512 characters."""
    ip: str | None
    """Client address truncated to its /24 (IPv4) or /48 (IPv6): no full address at rest."""
    referer: str | None
    """The Referer header, cut to 512 characters."""
    is_bot: bool
    """True for link previews, scanners and HEAD requests: redirected but not counted as human."""
    bot_reason: str | None = None
    """Why `is_bot` is true (e.g. `head`, `ua:whatsapp`, `referer:safelinks`, `cidr:...`)."""
    outcome: str | None = None
    """What the visitor got: `redirect` (the destination), `fallback` (an expired link's
    fallback URL) or `gone` (an expired link without one, answered 410). Null means redirect."""
    schema_version: int = SCHEMA_VERSION
    """Version of this record's schema; additive changes keep 1."""


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "event_id": str,
    "occurred_at": str,
    "code": str,
    "link_id": int,
    "org_id": int,
    "channel": str,
    "visitor_id": str,
    "is_bot": bool,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "campaign_id": int,
    "campaign_kind": str,
    "recipient_id": str,
    "user_agent": str,
    "ip": str,
    "referer": str,
    "bot_reason": str,
    "outcome": str,
    "schema_version": int,
}
_FIELDS = frozenset(f.name for f in dataclasses.fields(ClickEvent))


def new_event_id() -> str:
    """A fresh UUIDv7 as text: time-ordered, 74 random bits."""
    return str(uuid_utils.uuid7())


def utc_now_iso() -> str:
    """The current time as `2026-11-26T19:25:28.123Z`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def truncate_ip(raw: str | None) -> str | None:
    """Keep the network part of an address: /24 for IPv4, /48 for IPv6; None if unparsable."""
    if not raw:
        return None
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def encode(event: ClickEvent) -> bytes:
    """The event as the JSON bytes put on the topic."""
    return orjson.dumps(event)


def encode_click(
    event_id: str,
    occurred_at: str,
    code: str,
    link_id: int,
    org_id: int,
    campaign_id: int | None,
    campaign_kind: str | None,
    channel: str,
    recipient_id: str | None,
    visitor_id: str,
    user_agent: str | None,
    ip: str | None,
    referer: str | None,
    bot_reason: str | None,
    outcome: str | None,
) -> bytes:
    """`encode(ClickEvent(...))` without building the dataclass (`is_bot` is `bot_reason` set).

    The redirector's hot path: a frozen dataclass with keyword arguments costs more than the
    JSON itself. The bytes are the same, field for field and in the same order (a unit test
    holds the two equal).
    """
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": occurred_at,
            "code": code,
            "link_id": link_id,
            "org_id": org_id,
            "campaign_id": campaign_id,
            "campaign_kind": campaign_kind,
            "channel": channel,
            "recipient_id": recipient_id,
            "visitor_id": visitor_id,
            "user_agent": user_agent,
            "ip": ip,
            "referer": referer,
            "is_bot": bot_reason is not None,
            "bot_reason": bot_reason,
            "outcome": outcome,
            "schema_version": SCHEMA_VERSION,
        }
    )


def decode(raw: bytes | None) -> ClickEvent:
    """Read a record value back into a `ClickEvent`; unknown fields are ignored.

    Raises `EventError` saying what is wrong when the bytes are not a valid event.
    """
    data = read(raw)
    if _FIELDS.issuperset(data):
        return ClickEvent(**data)
    return ClickEvent(**{k: v for k, v in data.items() if k in _FIELDS})


def read(raw: bytes | None) -> dict[str, Any]:
    """A record value as the JSON object it holds, checked against the contract like `decode`,
    without building a `ClickEvent` (for readers that only need a few fields, fast).

    Raises `EventError` saying what is wrong when the bytes are not a valid event.
    """
    if raw is None:
        raise EventError("record has no value")
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"value is not JSON: {exc}") from None
    if type(data) is not dict or not _fits(data):
        _check(data)  # says what is wrong, or passes what the quick test was too strict for
    checked: dict[str, Any] = data
    return checked


_INT_OR_NONE = (int, type(None))
_STR_OR_NONE = (str, type(None))
# Derived from _OPTIONAL, so that a field added to the contract is checked on the quick path too.
_OPTIONAL_INTS = tuple(name for name, kind in _OPTIONAL.items() if kind is int)
_OPTIONAL_STRS = tuple(name for name, kind in _OPTIONAL.items() if kind is str)
assert len(_OPTIONAL_INTS) + len(_OPTIONAL_STRS) == len(_OPTIONAL)
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""A UUID in its one canonical spelling (lower case, hyphens), as `str(uuid.UUID(...))` writes."""


def _fits(data: dict[str, Any]) -> bool:
    """True when `data` is a valid event, tested quickly: exact types (orjson makes no
    subclasses, and `type(True) is bool`, not int) and an event id in canonical spelling. False
    may still be valid (an event id in another UUID spelling): `_check` decides then."""
    get = data.get
    event_id, visitor = get("event_id"), get("visitor_id")
    return (
        type(event_id) is str
        and CANONICAL_UUID.fullmatch(event_id) is not None
        and type(visitor) is str
        and visitor != ""
        and type(get("occurred_at")) is str
        and type(get("code")) is str
        and type(get("link_id")) is int
        and type(get("org_id")) is int
        and type(get("channel")) is str
        and type(get("is_bot")) is bool
        and all(type(get(name)) in _INT_OR_NONE for name in _OPTIONAL_INTS)
        and all(type(get(name)) in _STR_OR_NONE for name in _OPTIONAL_STRS)
    )


class Record(msgspec.Struct):
    """A click event read by `read_record`: the contract's fields as attributes (unknown fields
    are dropped). Required and optional exactly as `_REQUIRED` and `_OPTIONAL` say, with the
    same types: a unit test holds them equal, so that the two readers check one contract."""

    event_id: str
    occurred_at: str
    code: str
    link_id: int
    org_id: int
    channel: str
    visitor_id: str
    is_bot: bool
    campaign_id: int | None = None
    campaign_kind: str | None = None
    recipient_id: str | None = None
    user_agent: str | None = None
    ip: str | None = None
    referer: str | None = None
    bot_reason: str | None = None
    outcome: str | None = None
    schema_version: int | None = None


_decode_record = msgspec.json.Decoder(Record).decode


def read_record(raw: bytes | None) -> Record:
    """`read` for a reader of every record (the counter): the same checks, made while decoding
    (msgspec, strict types: `true` is no int), three times faster than `read`, and the values
    come back as attributes. The event id comes back in its canonical spelling.

    Raises `EventError` with `read`'s words for what is wrong.
    """
    try:
        record = _decode_record(raw)  # type: ignore[arg-type]  # None: TypeError, read says why
    except (msgspec.DecodeError, TypeError) as exc:
        read(raw)  # raises, saying what is wrong the way every reader says it
        raise EventError(str(exc)) from None  # a limit only msgspec has (an int over 64 bits)
    if not record.visitor_id:
        raise EventError("visitor_id must not be empty")
    if not CANONICAL_UUID.fullmatch(record.event_id):
        try:
            record.event_id = str(uuid.UUID(record.event_id))
        except ValueError:
            raise EventError(f"event_id {record.event_id[:64]!r} is not a UUID") from None
    return record


def _check(data: Any) -> None:
    """Raise `EventError` naming the first thing wrong with `data`; return if it is valid."""
    if not isinstance(data, dict):
        raise EventError(f"value is JSON {type(data).__name__}, expected an object")
    for name, kind in _REQUIRED.items():
        value = data.get(name)
        if value is None:
            raise EventError(f"field {name!r} is missing")
        if not _is(value, kind):
            raise EventError(f"field {name!r} has type {type(value).__name__}")
    for name, kind in _OPTIONAL.items():
        value = data.get(name)
        if value is not None and not _is(value, kind):
            raise EventError(f"field {name!r} has type {type(value).__name__}")
    if not data["visitor_id"]:
        raise EventError("visitor_id must not be empty")
    try:
        uuid.UUID(data["event_id"])
    except ValueError:
        raise EventError(f"event_id {data['event_id'][:64]!r} is not a UUID") from None


def _is(value: object, kind: type | tuple[type, ...]) -> bool:
    # bool is a subclass of int: an int field must not accept true/false.
    if kind is int and isinstance(value, bool):
        return False
    return isinstance(value, kind)
