from __future__ import annotations

import json
from importlib import resources

import jsonschema
import msgspec
import orjson
import pytest

from shared import events
from shared.errors import EventError


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


def schema() -> dict[str, object]:
    text = (resources.files("shared") / "schemas" / "click_event.v1.json").read_text()
    loaded: dict[str, object] = json.loads(text)
    return loaded


def test_encode_decode_round_trip() -> None:
    event = make_event()
    assert events.decode(events.encode(event)) == event


def test_encoded_event_validates_against_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(orjson.loads(events.encode(make_event())))
    validator.validate(
        orjson.loads(events.encode(make_event(campaign_id=None, campaign_kind=None)))
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
def test_the_hot_path_encoder_writes_the_same_bytes_as_the_dataclass(
    overrides: dict[str, object],
) -> None:
    event = make_event(**overrides)
    fast = events.encode_click(
        event.event_id,
        event.occurred_at,
        event.code,
        event.link_id,
        event.org_id,
        event.campaign_id,
        event.campaign_kind,
        event.channel,
        event.recipient_id,
        event.visitor_id,
        event.user_agent,
        event.ip,
        event.referer,
        event.bot_reason,
        event.outcome,
    )
    assert fast == events.encode(event)


def test_unknown_fields_are_ignored() -> None:
    data = orjson.loads(events.encode(make_event()))
    data["added_in_a_later_version"] = {"x": 1}
    assert events.decode(orjson.dumps(data)).link_id == 7


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [events.new_event_id() for _ in range(50)]
    assert all(i[14] == "7" for i in ids)
    assert len(set(ids)) == 50


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "record has no value"),
        (b"\xff\xfe", "value is not JSON"),
        (b"[1, 2]", "value is JSON list, expected an object"),
        (b'{"event_id": "x"}', "field 'occurred_at' is missing"),
    ],
)
def test_unreadable_records_say_why(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventError) as caught:
        events.decode(raw)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("link_id", "7", "field 'link_id' has type str"),
        ("link_id", True, "field 'link_id' has type bool"),
        ("is_bot", 1, "field 'is_bot' has type int"),
        ("campaign_id", 1.5, "field 'campaign_id' has type float"),
        ("event_id", "not-a-uuid", "event_id 'not-a-uuid' is not a UUID"),
        ("visitor_id", "", "visitor_id must not be empty"),
    ],
)
def test_wrongly_typed_fields_are_refused(field: str, value: object, reason: str) -> None:
    data = orjson.loads(events.encode(make_event()))
    data[field] = value
    with pytest.raises(EventError) as caught:
        events.decode(orjson.dumps(data))
    assert str(caught.value) == reason


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


def test_the_fast_reader_declares_the_contract_of_the_checked_reader() -> None:
    fields = {f.name: f for f in msgspec.structs.fields(events.Record)}
    assert set(fields) == set(events._REQUIRED) | set(events._OPTIONAL)
    for name, kind in events._REQUIRED.items():
        assert fields[name].type is kind and fields[name].required, name
    for name, kind in events._OPTIONAL.items():
        assert isinstance(kind, type)
        assert fields[name].type == kind | None and not fields[name].required, name


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("link_id", "7"),
        ("link_id", True),
        ("link_id", None),
        ("is_bot", 1),
        ("campaign_id", 1.5),
        ("referer", 3),
        ("event_id", "not-a-uuid"),
        ("visitor_id", ""),
        ("occurred_at", None),
    ],
)
def test_the_fast_reader_refuses_what_the_checked_reader_refuses(field: str, value: object) -> None:
    data = orjson.loads(events.encode(make_event()))
    data[field] = value
    raw = orjson.dumps(data)
    with pytest.raises(EventError) as checked:
        events.read(raw)
    with pytest.raises(EventError) as fast:
        events.read_record(raw)
    assert str(fast.value) == str(checked.value)


@pytest.mark.parametrize("raw", [None, b"\xff\xfe", b"[1, 2]", b'{"event_id": "x"}', b"7"])
def test_the_fast_reader_says_why_as_the_checked_reader_does(raw: bytes | None) -> None:
    with pytest.raises(EventError) as checked:
        events.read(raw)
    with pytest.raises(EventError) as fast:
        events.read_record(raw)
    assert str(fast.value) == str(checked.value)


def test_the_fast_reader_reads_what_the_checked_reader_reads() -> None:
    event = make_event(campaign_id=None, event_id=str(events.new_event_id()).upper())
    data = orjson.loads(events.encode(event))
    data["added_in_a_later_version"] = [1]
    del data["referer"]
    record = events.read_record(orjson.dumps(data))
    expected = {**events.read(orjson.dumps(data)), "referer": None}
    expected["event_id"] = expected["event_id"].lower()
    del expected["added_in_a_later_version"]
    assert msgspec.structs.asdict(record) == expected
