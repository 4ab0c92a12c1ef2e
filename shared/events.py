"""The click event: the public contract of topic `clicks.v1`, defined once, by `ClickEvent`.

Key: the short code (UTF-8). Value: one JSON object. Everything else derives from the type: the
redirector encodes it (`encode`), the counter and the relay read it with the one decoder
(`decode`), and the JSON Schema `shared/schemas/click_event.v1.json` is generated from it
(`json_schema`); rewrite that file with `python -m shared.events --write-schema` after changing
the type (a unit test holds the file equal to what the type produces).

What `decode` enforces and what the schema only publishes: the decoder refuses what a reader
cannot safely take (a missing required field, a wrong type, `true` for an int, an id outside
1..2^63-1, an empty visitor, an event id that is no UUID, a campaign kind or channel that
Postgres's `CHECK`s would refuse and so stop a counter batch). Promises the producer makes that
readers need not check (the code's alphabet, header lengths, date and UUID formats, the outcome
values, `schema_version` being present and 1) are in the schema only, through
`extra_json_schema`, so that a producer that widens them later is not dead-lettered by us.

Evolution is additive only: new fields are optional, readers ignore fields they do not know, and
a breaking change is a new topic.
"""

from __future__ import annotations

import argparse
import inspect
import ipaddress
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
import uuid_utils

from shared.campaigns import CHANNEL_PATTERN, CampaignKind, is_channel
from shared.errors import EventError

SCHEMA_VERSION = 1
SCHEMA_FILE = "click_event.v1.json"
SCHEMA_ID = "https://clicktrack.example/schemas/click_event.v1.json"
SCHEMA_TITLE = "Clicktrack click event, topic clicks.v1"

Outcome = Literal["redirect", "fallback", "gone"]
"""What the visitor got: the destination, an expired link's fallback URL, or 410 Gone."""
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
AFTER_EXPIRY: frozenset[str] = frozenset({"fallback", "gone"})
"""Outcomes of a tap on an expired link: counted apart (`after_expiry`), never as human clicks."""

BotKind = Literal["user_agent", "referrer", "network", "head"]
"""Why a hit is a bot's, as the reports count them: the kind of its `bot_reason`."""
BOT_KINDS: tuple[BotKind, ...] = get_args(BotKind)
_BOT_KIND_OF_PREFIX: dict[str, BotKind] = {
    "ua": "user_agent",
    "referer": "referrer",
    "cidr": "network",
    "head": "head",
}


def bot_kind(reason: str | None) -> BotKind | None:
    """The kind of a `bot_reason` (`ua:WhatsApp` -> `user_agent`, `head` -> `head`, ...); None for
    no reason or one we do not know (the reports count those bots as `other`)."""
    if not reason:
        return None
    return _BOT_KIND_OF_PREFIX.get(reason.split(":", 1)[0])


MAX_ID = 2**63 - 1
"""The largest database id (a Postgres bigint)."""
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
"""A database id: a positive Postgres bigint (the API's bodies take the same type)."""
Header = Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": 512})]
"""A request header as published: cut to 512 characters by the redirector."""


def _doc(description: str, **schema: Any) -> msgspec.Meta:
    """A field's description, and constraints the schema publishes but msgspec does not check
    (`decode` checks the channel's pattern itself; the others are the producer's promises)."""
    return msgspec.Meta(description=description, extra_json_schema=schema or None)


class ClickEvent(msgspec.Struct, frozen=True, gc=False):
    """One tap on a short link. Key: the short code (UTF-8). Delivery is at least once:
    deduplicate by event_id. Additive evolution only: readers must ignore unknown fields."""

    # The fields in their order on the wire: required ones first, so that the redirector can
    # build an event positionally (130 ns; with keywords, 1,100 ns: more than the encoding).
    # gc=False because an event holds only strings and numbers (no cycles): cheaper to make.
    event_id: Annotated[
        str, _doc("UUIDv7 minted by the redirector; the deduplication key.", format="uuid")
    ]
    occurred_at: Annotated[
        str,
        _doc(
            "When the redirector answered, UTC, ISO 8601 with milliseconds (...Z).",
            format="date-time",
        ),
    ]
    code: Annotated[
        str,
        _doc("The short code requested; also the record key.", pattern="^[0-9A-Za-z]{4,32}$"),
    ]
    link_id: Annotated[Id, _doc("The tracked link the code belongs to.")]
    org_id: Annotated[Id, _doc("The organisation that owns the link.")]
    channel: Annotated[
        str,
        # The pattern is checked by `decode`, not by msgspec: msgspec's `pattern` cost 580 ns a
        # record (as much as the rest of decoding), `decode`'s cache of channels seen 30 ns.
        _doc(
            "Delivery channel of the message that carried the link, e.g. sms.",
            pattern=CHANNEL_PATTERN,
        ),
    ]
    visitor_id: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            description="Who clicked, for unique counts: r:<recipient pseudonym>, else the"
            " redirector's signed cookie id, else a keyed hash of IP and user agent. Opaque.",
        ),
    ]
    is_bot: Annotated[
        bool,
        _doc("Link previews, scanners, HEAD requests: redirected, not counted as human clicks."),
    ]
    campaign_id: Annotated[
        Id | None, _doc("The campaign of the link; null for a link outside campaigns.")
    ] = None
    campaign_kind: Annotated[
        CampaignKind | None, _doc("The campaign's kind; null exactly when campaign_id is null.")
    ] = None
    recipient_id: Annotated[
        str | None,
        _doc(
            "Pseudonym of the recipient the code was minted for (32 hex digits: HMAC-SHA256 of"
            " the sender's id under the organisation's pseudonym key, never the id itself);"
            " null for a shared code."
        ),
    ] = None
    user_agent: Annotated[Header | None, _doc("The User-Agent header, cut to 512.")] = None
    ip: Annotated[
        str | None, _doc("Client address truncated to /24 (IPv4) or /48 (IPv6); never full.")
    ] = None
    referer: Annotated[Header | None, _doc("The Referer header, cut to 512.")] = None
    bot_reason: Annotated[
        str | None,
        _doc("Why is_bot is true: head, ua:<name>, referer:<name>, cidr:<network>; else null."),
    ] = None
    outcome: Annotated[
        Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(OUTCOMES)})] | None,
        _doc(
            "What the visitor got: the destination, an expired link's fallback URL, or 410 Gone."
            " Optional; null or absent means redirect."
        ),
    ] = None
    schema_version: Annotated[
        int, _doc("Version of this contract; additive changes keep 1.", const=SCHEMA_VERSION)
    ] = SCHEMA_VERSION


encode = msgspec.json.Encoder().encode
"""`encode(event)`: the event as the JSON bytes put on the topic (fields in declaration order)."""

_decode = msgspec.json.Decoder(ClickEvent).decode
# An event id in its canonical spelling (lower case, hyphens, as `str(uuid.UUID(...))` writes)
# has exactly this shape once every hex digit is mapped to "0": a bytes.translate and a compare,
# half the time of a regular expression, on the counter's path (once per record).
_HEX_TO_0 = bytes(
    ord("0") if chr(b) in "0123456789abcdef" else ord("-") if chr(b) == "-" else ord("x")
    for b in range(256)
)
_CANONICAL_SHAPE = b"00000000-0000-0000-0000-000000000000"


def decode(raw: bytes | None) -> ClickEvent:
    """A record value as a `ClickEvent`, checked while decoding (strict types: `true` is no
    int); unknown fields are ignored; the event id comes back in its canonical spelling.

    Raises `EventError` naming the field and what is wrong when the bytes are not a valid event:
    the reason that goes with the record to the dead-letter topic.
    """
    if raw is None:
        raise EventError("record has no value")
    try:
        event = _decode(raw)
    except msgspec.ValidationError as exc:
        raise EventError(_reason(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise EventError(f"value is not JSON: {exc}") from None
    event_id = event.event_id
    if event_id.encode("utf-8", "surrogatepass").translate(_HEX_TO_0) != _CANONICAL_SHAPE:
        try:
            canonical = str(uuid.UUID(event_id))
        except ValueError:
            raise EventError(f"event_id {event_id[:64]!r} is not a UUID") from None
        msgspec.structs.force_setattr(event, "event_id", canonical)
    if event.channel not in _channels_seen:
        _check_channel(event.channel)
    return event


_channels_seen: set[str] = set()
"""Channels that matched `CHANNEL_PATTERN`: a handful in practice, kept up to 1,024."""


def _check_channel(channel: str) -> None:
    if not is_channel(channel):
        raise EventError(f"field 'channel' {channel[:64]!r} does not match {CHANNEL_PATTERN}")
    if len(_channels_seen) < 1024:
        _channels_seen.add(channel)


_AT_FIELD = re.compile(r"(?P<what>.*) - at `\$\.(?P<field>\w+)`")
_WRONG_TYPE = re.compile(r"Expected `[^`]+`, got `(?P<got>\w+)`")
_MISSING = re.compile(r"Object missing required field `(?P<field>\w+)`")
_PYTHON_NAMES = {"array": "list", "object": "dict"}


def _reason(message: str) -> str:
    """msgspec's validation message in our words, naming the field:
    `field 'link_id' has type str`, `field 'visitor_id' is missing`, ..."""
    if missing := _MISSING.fullmatch(message):
        return f"field {missing['field']!r} is missing"
    at = _AT_FIELD.fullmatch(message)
    if at is None:  # the value itself: `Expected `object`, got `array``
        wrong = _WRONG_TYPE.fullmatch(message)
        got = wrong["got"] if wrong else "value"
        return f"value is JSON {_PYTHON_NAMES.get(got, got)}, expected an object"
    name, what = at["field"], at["what"]
    if wrong := _WRONG_TYPE.fullmatch(what):
        got = wrong["got"]
        if got == "null":
            return f"field {name!r} is missing"
        return f"field {name!r} has type {_PYTHON_NAMES.get(got, got)}"
    return f"field {name!r}: {what[0].lower()}{what[1:].replace('`', '')}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of the topic's value, generated from `ClickEvent`."""
    (_,), components = msgspec.json.schema_components([ClickEvent])
    body = components["ClickEvent"]
    assert not components.keys() - {"ClickEvent"}, "the event is flat: no $defs to publish"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": SCHEMA_TITLE,
        "description": " ".join(inspect.cleandoc(ClickEvent.__doc__ or "").split()),
        "type": "object",
        # Producers always write schema_version; readers take its absence as 1.
        "required": [*body["required"], "schema_version"],
        "additionalProperties": True,
        "properties": body["properties"],
    }


def schema_text() -> str:
    """`json_schema()` as the committed file holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


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


def main(argv: list[str] | None = None) -> int:
    """`python -m shared.events --write-schema`: rewrite the committed schema from the type."""
    parser = argparse.ArgumentParser(prog="python -m shared.events", description=main.__doc__)
    parser.add_argument("--write-schema", action="store_true", help="rewrite the schema file")
    args = parser.parse_args(argv)
    if not args.write_schema:
        sys.stdout.write(schema_text())
        return 0
    path = Path(str(resources.files("shared") / "schemas" / SCHEMA_FILE))
    path.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
