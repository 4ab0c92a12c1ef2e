"""What the counter admits: a click it can count, or a reason the record goes to the DLQ."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import orjson
import pytest

from services.counter.intake import admit
from shared import events
from shared.errors import EventError
from tests.unit.test_events import make_event

NOW = datetime(2026, 11, 26, 19, 30, tzinfo=UTC)


def encoded(**overrides: object) -> bytes:
    # A minute before NOW, not the wall clock: NOW is fixed, and an hour after it every event
    # stamped with the real time would be "in the future".
    overrides.setdefault("occurred_at", "2026-11-26T19:29:00.000Z")
    return events.encode(make_event(**overrides))


def test_a_click_gets_its_time_in_milliseconds_and_its_utc_day() -> None:
    event = make_event(occurred_at="2026-11-26T05:59:59.999+05:30")  # 00:29:59.999 UTC
    click = admit(events.encode(event), max_bytes=65_536, now=NOW)
    at = datetime(2026, 11, 26, 0, 29, 59, 999_000, tzinfo=UTC)
    assert click.at_ms == int(at.timestamp()) * 1000 + 999
    assert click.day.isoformat() == "2026-11-26"
    assert click.occurred == datetime(2026, 11, 26, 0, 29, 59, 999_000, tzinfo=UTC)
    assert click.event_id == event.event_id


def test_an_event_id_gets_one_spelling() -> None:
    upper = str(UUID(int=0xABC)).upper()
    assert admit(encoded(event_id=upper), max_bytes=65_536, now=NOW).event_id == upper.lower()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"occurred_at": "26/11/2026"}, "occurred_at '26/11/2026' is not ISO 8601"),
        ({"occurred_at": "2026-11-26T10:00:00"}, "occurred_at has no time zone"),
        (
            {"occurred_at": "2026-11-26T20:31:00Z"},
            "occurred_at 2026-11-26T20:31:00Z is in the future",
        ),
        (
            {"occurred_at": "1999-12-31T23:00:00Z"},
            "occurred_at 1999-12-31T23:00:00Z is before 2000",
        ),
        ({"link_id": 0}, "field 'link_id': expected int >= 1"),
        ({"campaign_id": 2**63}, "field 'campaign_id': expected int <= 9223372036854775807"),
        ({"visitor_id": "v" * 257}, "field 'visitor_id' is longer than 256 characters"),
        ({"channel": ""}, "field 'channel' '' does not match ^[a-z][a-z0-9_]{0,31}(?!\\n)$"),
    ],
)
def test_what_counting_cannot_use_is_refused(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(EventError) as caught:
        admit(encoded(**overrides), max_bytes=65_536, now=NOW)
    assert str(caught.value) == reason


def test_the_recipient_is_the_visitor_when_there_is_one() -> None:
    with_recipient = encoded(recipient_id="cust-42", visitor_id="v:cookie")
    assert admit(with_recipient, max_bytes=65_536, now=NOW).visitor == "r:cust-42"
    assert admit(encoded(visitor_id="v:cookie"), max_bytes=65_536, now=NOW).visitor == "v:cookie"


def test_a_click_within_the_clock_skew_is_admitted() -> None:
    click = admit(encoded(occurred_at="2026-11-26T20:29:00Z"), max_bytes=65_536, now=NOW)
    assert click.at_ms == int(datetime(2026, 11, 26, 20, 29, tzinfo=UTC).timestamp()) * 1000


@pytest.mark.parametrize(
    ("overrides", "after_expiry", "bot_kind"),
    [
        ({}, False, None),
        ({"outcome": "redirect"}, False, None),
        ({"outcome": "fallback"}, True, None),
        ({"outcome": "gone"}, True, None),
        ({"is_bot": True, "bot_reason": "ua:WhatsApp"}, False, "user_agent"),
        ({"is_bot": True, "bot_reason": "referer:proofpoint"}, False, "referrer"),
        ({"is_bot": True, "bot_reason": "cidr:203.0.113.0/24"}, False, "network"),
        ({"is_bot": True, "bot_reason": "head", "outcome": "gone"}, True, "head"),
        ({"is_bot": True, "bot_reason": None}, False, None),
        ({"is_bot": True, "bot_reason": "martian"}, False, None),
        ({"is_bot": False, "bot_reason": "head"}, False, None),
    ],
)
def test_a_click_knows_its_outcome_and_the_kind_of_its_bot_reason(
    overrides: dict[str, object], after_expiry: bool, bot_kind: str | None
) -> None:
    click = admit(encoded(**overrides), max_bytes=65_536, now=NOW)
    assert (click.after_expiry, click.bot_kind) == (after_expiry, bot_kind)


def test_the_recipient_is_kept_for_the_per_recipient_counts() -> None:
    assert admit(encoded(recipient_id="cust-42"), max_bytes=65_536, now=NOW).recipient == "cust-42"
    assert admit(encoded(), max_bytes=65_536, now=NOW).recipient is None


def test_a_record_over_the_size_limit_is_refused_before_decoding() -> None:
    raw = orjson.dumps({"x": "y" * 2000})
    with pytest.raises(EventError) as caught:
        admit(raw, max_bytes=1024, now=NOW)
    assert str(caught.value) == f"record is {len(raw)} bytes, over the 1024-byte limit"


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def test_a_click_from_a_clock_ahead_is_counted_at_its_arrival() -> None:
    arrival = datetime(2026, 11, 26, 19, 29, 30, tzinfo=UTC)
    ahead = encoded(occurred_at="2026-11-26T20:31:00Z")  # 61 minutes after its arrival
    click = admit(ahead, max_bytes=65_536, now=NOW, arrival_ms=ms(arrival))
    assert click.occurred == arrival
    assert click.at_ms == ms(arrival)
    # judged by its arrival, not by the counter's clock: read again a day later, the same time
    later = admit(ahead, max_bytes=65_536, now=NOW.replace(day=27), arrival_ms=ms(arrival))
    assert later.at_ms == click.at_ms and later.day == click.day


def test_a_click_within_the_tolerance_of_its_arrival_keeps_its_time() -> None:
    arrival = datetime(2026, 11, 26, 19, 29, 30, tzinfo=UTC)
    click = admit(
        encoded(occurred_at="2026-11-26T19:33:00Z"),
        max_bytes=65_536,
        now=NOW,
        arrival_ms=ms(arrival),
    )
    assert click.occurred == datetime(2026, 11, 26, 19, 33, tzinfo=UTC)


def test_a_click_older_than_the_dedup_window_is_refused() -> None:
    kept = admit(
        encoded(occurred_at="2026-11-17T00:00:00Z"), max_bytes=65_536, now=NOW, keep_days=9
    )
    assert kept.day.isoformat() == "2026-11-17"
    with pytest.raises(EventError) as caught:
        admit(encoded(occurred_at="2026-11-16T23:59:59Z"), max_bytes=65_536, now=NOW, keep_days=9)
    assert str(caught.value) == (
        "occurred_at 2026-11-16T23:59:59Z is older than the 9-day deduplication window"
        " (DEDUP_RETENTION_DAYS): a replay of it could not be recognised"
    )
