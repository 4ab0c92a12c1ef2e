"""The click event: one type, its encoding, its one decoder, and the schema generated from it."""

from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared import events
from shared.campaigns import CAMPAIGN_KINDS
from shared.errors import EventError

EVENT_ID = "0192f0c1-7d3e-7abc-8def-0123456789ab"


def make_event(**overrides: object) -> events.ClickEvent:
    fields: dict[str, object] = {
        "event_id": events.new_event_id(),
        "occurred_at": events.utc_now_iso(),
        "code": "AbC123xYz9",
        "link_id": 7,
        "org_id": 3,
        "campaign_id": 11,
        "campaign_kind": "resend",
        "channel": "sms",
        "recipient_id": None,
        "visitor_id": "v:0123456789abcdef0123456789abcdef",
        "user_agent": "Mozilla/5.0",
        "ip": "203.0.113.0",
        "referer": None,
        "is_bot": False,
    }
    fields.update(overrides)
    return events.ClickEvent(**fields)  # type: ignore[arg-type]


def committed_schema() -> str:
    return (resources.files("shared") / "schemas" / events.SCHEMA_FILE).read_text("utf-8")


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(committed_schema())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_the_committed_schema_is_the_one_the_type_generates() -> None:
    # If this fails after changing ClickEvent: python -m shared.events --write-schema
    assert committed_schema() == events.schema_text()


def test_the_schema_keeps_the_published_contract() -> None:
    schema = json.loads(committed_schema())
    assert list(schema["properties"]) == list(events.ClickEvent.__struct_fields__)
    assert schema["required"] == [
        *("event_id", "occurred_at", "code", "link_id", "org_id", "channel", "visitor_id"),
        *("is_bot", "schema_version"),
    ]
    assert schema["additionalProperties"] is True
    assert schema["properties"]["campaign_kind"]["anyOf"][0]["enum"] == sorted(CAMPAIGN_KINDS)
    assert all(p.get("description") for p in schema["properties"].values())


def test_the_wire_format_is_exact() -> None:
    event = make_event(event_id=EVENT_ID, occurred_at="2026-11-26T19:25:28.123Z")
    assert events.encode(event) == (
        b'{"event_id":"0192f0c1-7d3e-7abc-8def-0123456789ab",'
        b'"occurred_at":"2026-11-26T19:25:28.123Z","code":"AbC123xYz9","link_id":7,"org_id":3,'
        b'"channel":"sms","visitor_id":"v:0123456789abcdef0123456789abcdef","is_bot":false,'
        b'"campaign_id":11,"campaign_kind":"resend","recipient_id":null,'
        b'"user_agent":"Mozilla/5.0","ip":"203.0.113.0","referer":null,"bot_reason":null,'
        b'"outcome":null,"schema_version":1}'
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"campaign_id": None, "campaign_kind": None, "recipient_id": "r-9", "visitor_id": "r:r-9"},
        {"is_bot": True, "bot_reason": "ua:whatsapp", "outcome": "redirect"},
        {"is_bot": True, "bot_reason": "head", "outcome": "gone", "user_agent": None, "ip": None},
        {"outcome": "fallback", "referer": "https://t.co/x", "user_agent": 'Nokia \u00e9 "q"'},
    ],
)
def test_encoded_events_validate_and_decode_to_themselves(overrides: dict[str, object]) -> None:
    event = make_event(**overrides)
    validator().validate(orjson.loads(events.encode(event)))
    assert events.decode(events.encode(event)) == event


def test_a_positional_event_is_the_keyword_event() -> None:
    # The redirector builds events positionally (the cheap way): the order is the field order.
    event = make_event(is_bot=True, bot_reason="head", outcome="gone", recipient_id="r-1")
    values = [getattr(event, name) for name in events.ClickEvent.__struct_fields__]
    assert events.ClickEvent(*values) == event


def test_unknown_fields_are_ignored_and_absent_optional_fields_are_null() -> None:
    data = orjson.loads(events.encode(make_event(event_id=EVENT_ID)))
    data["added_in_a_later_version"] = {"x": 1}
    for optional in ("campaign_id", "campaign_kind", "referer", "outcome", "schema_version"):
        del data[optional]
    expected = make_event(event_id=EVENT_ID, occurred_at=data["occurred_at"], campaign_id=None)
    expected = msgspec.structs.replace(expected, campaign_kind=None)
    assert events.decode(orjson.dumps(data)) == expected


@pytest.mark.parametrize(
    "spelling",
    [EVENT_ID.upper(), "{" + EVENT_ID + "}", EVENT_ID.replace("-", ""), "urn:uuid:" + EVENT_ID],
)
def test_an_event_id_comes_back_in_its_canonical_spelling(spelling: str) -> None:
    assert events.decode(events.encode(make_event(event_id=spelling))).event_id == EVENT_ID


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [events.new_event_id() for _ in range(50)]
    assert all(i[14] == "7" for i in ids)
    assert len(set(ids)) == 50


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe", "value is not JSON: JSON is malformed: invalid character (byte 0)"),
        (b"", "value is not JSON: Input data was truncated"),
        (b"[1, 2]", "value is JSON list, expected an object"),
        (b"7", "value is JSON int, expected an object"),
        (b'{"event_id": "x"}', "field 'occurred_at' is missing"),
    ],
)
def test_unreadable_records_say_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        events.decode(raw)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("link_id", "7", "field 'link_id' has type str"),
        ("link_id", True, "field 'link_id' has type bool"),
        ("link_id", None, "field 'link_id' is missing"),
        ("link_id", 0, "field 'link_id': expected int >= 1"),
        ("org_id", 2**63, "field 'org_id': expected int <= 9223372036854775807"),
        ("org_id", 2**64, "field 'org_id': expected int <= 9223372036854775807"),
        ("is_bot", 1, "field 'is_bot' has type int"),
        ("campaign_id", 1.5, "field 'campaign_id' has type float"),
        ("campaign_id", -1, "field 'campaign_id': expected int >= 1"),
        ("referer", 3, "field 'referer' has type int"),
        ("referer", [3], "field 'referer' has type list"),
        ("ip", {}, "field 'ip' has type dict"),
        ("occurred_at", None, "field 'occurred_at' is missing"),
        ("schema_version", None, "field 'schema_version' is missing"),
        ("event_id", "not-a-uuid", "event_id 'not-a-uuid' is not a UUID"),
        ("visitor_id", "", "field 'visitor_id': expected str of length >= 1"),
        ("campaign_kind", "newsletter", "field 'campaign_kind': invalid enum value 'newsletter'"),
        ("channel", "", "field 'channel' '' does not match ^[a-z][a-z0-9_]{0,31}(?!\\n)$"),
        ("channel", "SMS", "field 'channel' 'SMS' does not match ^[a-z][a-z0-9_]{0,31}(?!\\n)$"),
        (
            "channel",
            "sms\n",
            "field 'channel' 'sms\\n' does not match ^[a-z][a-z0-9_]{0,31}(?!\\n)$",
        ),
    ],
)
def test_bad_fields_are_refused_naming_the_field(field: str, value: object, reason: str) -> None:
    data = orjson.loads(events.encode(make_event()))
    data[field] = value
    with pytest.raises(EventError) as caught:
        events.decode(raw_of(data))
    assert str(caught.value) == reason


def raw_of(data: dict[str, object]) -> bytes:
    """JSON of `data`, ints beyond 64 bits included (orjson refuses those)."""
    return json.dumps(data).encode()


def test_every_channel_and_kind_the_api_accepts_is_read() -> None:
    for kind in CAMPAIGN_KINDS:
        for channel in ("sms", "whatsapp", "rcs_2", "a" * 32):
            raw = events.encode(make_event(campaign_kind=kind, channel=channel))
            assert (events.decode(raw).campaign_kind, events.decode(raw).channel) == (kind, channel)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:abcd:12:1:2:3:4", "2001:db8:abcd::"),
        ("not an ip", None),
        (None, None),
    ],
)
def test_ip_is_truncated(raw: str | None, kept: str | None) -> None:
    assert events.truncate_ip(raw) == kept


FIELDS = list(events.ClickEvent.__struct_fields__)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from([EVENT_ID, EVENT_ID.upper(), "", "sms", "resend", "SMS"]),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=2),
)


@given(
    st.dictionaries(st.sampled_from([*FIELDS, "added_later"]), values, max_size=4),
    st.lists(st.sampled_from(FIELDS), max_size=2),
)
@example({"visitor_id": ""}, [])
@example({"link_id": True}, [])
@settings(suppress_health_check=[HealthCheck.too_slow])  # the test machines are shared
@example({"added_later": [1]}, ["campaign_id", "bot_reason"])
def test_a_record_is_read_whole_or_refused_naming_a_changed_field(
    changes: dict[str, object], removed: list[str]
) -> None:
    data: dict[str, object] = orjson.loads(events.encode(make_event(event_id=EVENT_ID)))
    for name in removed:
        data.pop(name, None)
    data.update(changes)
    try:
        event = events.decode(raw_of(data))
    except EventError as exc:
        named = re.match(r"field '(\w+)'|(event_id) ", str(exc))
        assert named and (named[1] or named[2]) in set(changes) | set(removed), str(exc)
        return
    read = msgspec.structs.asdict(event)
    for name in FIELDS:
        expected = data.get(name, 1 if name == "schema_version" else None)
        if name == "event_id":
            expected = EVENT_ID
        assert read[name] == expected and type(read[name]) is type(expected), name
