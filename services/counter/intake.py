"""From Kafka record to countable click: decode, check what counting relies on, or refuse.

`events.decode` checks the contract (JSON object, field types, ids in range, the campaign kinds
and channels Postgres accepts). The counter also needs a few things the types do not say: a
parsable `occurred_at` (it picks the hour and the day partition) and bounded sizes (every text
ends up in an index). A record that fails any check is refused with a reason and goes to the
dead-letter topic; `links.LinkOwners` then checks that the link is the org's and campaign's the
event claims.

Time, the rule (docs/click-topic.md says it to producers):
- an event is counted in the hour of its `occurred_at`;
- unless that is more than `FUTURE_TOLERANCE` after the record's arrival, the broker's
  `LogAppendTime` stamp (the clicks topic is made with it): a redirector whose clock runs ahead
  would otherwise count in hours that have not come yet. It is then counted at its arrival. The
  arrival belongs to the record, so a redelivery of it lands in the same hour and day partition
  and is recognised as a duplicate. Without a broker stamp (a topic made before) an event more
  than `MAX_CLOCK_SKEW` ahead of the counter's clock is refused, as before;
- an event older than the deduplication window (`DEDUP_RETENTION_DAYS`, the partitions kept) is
  refused: its day's event ids are gone, so counting it could count a replay twice.

A `Click` is not a second copy of the event: it is the plain tuple of the values counting derives
from one (hour, day, visitor), which the store turns into one array per column in one step.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from shared import events
from shared.errors import EventError

MAX_TEXT = 256
"""Longest `visitor_id`, `recipient_id`, `channel` and `code` the counter accepts, characters."""
MAX_CLOCK_SKEW = timedelta(hours=1)
"""How far ahead of the counter's clock `occurred_at` may be when the record has no broker
stamp to count it at instead."""
FUTURE_TOLERANCE = timedelta(minutes=5)
"""How far ahead of its arrival (the broker's stamp) `occurred_at` is believed."""
_TOLERANCE_MS = FUTURE_TOLERANCE.total_seconds() * 1000
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Click(NamedTuple):
    """A click event reduced to what counting needs, each value computed once.

    The fields before `day`, in this order, are the columns the store sends to Postgres.
    """

    event_id: str
    """The event id in canonical form (lower case, hyphens): the deduplication key."""
    at_ms: int
    """`occurred_at` as Unix milliseconds: Postgres makes the click's time, quarter hour and
    UTC day from it. An int costs a quarter of what a datetime does to build and to send
    (asyncpg encodes a timestamptz in Python), and this runs for every click."""
    link_id: int
    campaign_id: int | None
    org_id: int
    campaign_kind: str | None
    channel: str
    visitor: str
    """Who clicked, for the uniques: `r:<recipient_id>` when the code was minted for a recipient
    (the strongest identity, whatever the publisher put in `visitor_id`), else `visitor_id`."""
    is_bot: bool
    after_expiry: bool
    """The link had expired: the visitor got its fallback or a 410 (counted apart)."""
    bot_kind: str | None
    """For a bot, the kind of its reason (`events.bot_kind`); else None."""
    recipient: str | None
    """The recipient the code was minted for, for the per-recipient counts; None for a shared
    code."""
    day: date
    """`occurred_at`'s UTC day (Postgres takes it from `at_ms`: a date costs more to send)."""
    occurred: datetime
    """When the click is counted, UTC: `occurred_at`, or its arrival (the module's time rule)."""
    code: str
    """The short code tapped (`services.counter.tombstones` reads a legacy event's recipient
    from it)."""


def admit(
    raw: bytes | None,
    *,
    max_bytes: int,
    now: datetime | None = None,
    arrival_ms: int | None = None,
    keep_days: int | None = None,
) -> Click:
    """The click in `raw`, or `EventError` saying why it cannot be counted.

    `max_bytes`: the largest record value accepted, bytes. `now`: the time to judge
    `occurred_at` by (default: the current time; a batch passes one for all its records).
    `arrival_ms`: the broker's `LogAppendTime` of the record, ms since 1970, if it has one (see
    the module's time rule). `keep_days`: the deduplication window, days
    (`DEDUP_RETENTION_DAYS`); None: no lower bound but the year 2000.
    """
    if raw is not None and len(raw) > max_bytes:
        raise EventError(f"record is {len(raw)} bytes, over the {max_bytes}-byte limit")
    record = events.decode(raw)
    occurred_at = record.occurred_at
    try:
        occurred = datetime.fromisoformat(occurred_at)
    except ValueError:
        raise EventError(f"occurred_at {occurred_at[:64]!r} is not ISO 8601") from None
    if occurred.tzinfo is None:
        raise EventError("occurred_at has no time zone")
    if occurred.tzinfo is not UTC:
        occurred = occurred.astimezone(UTC)
    now = now or datetime.now(UTC)
    if arrival_ms is not None:
        if occurred.timestamp() * 1000 > arrival_ms + _TOLERANCE_MS:
            # a clock running ahead: counted when the broker took it
            occurred = datetime.fromtimestamp(arrival_ms / 1000, UTC)
    elif occurred > now + MAX_CLOCK_SKEW:
        raise EventError(f"occurred_at {occurred_at} is in the future")
    if occurred < _EPOCH:
        raise EventError(f"occurred_at {occurred_at} is before 2000")
    if keep_days is not None and occurred.date() < now.date() - timedelta(days=keep_days):
        raise EventError(
            f"occurred_at {occurred_at} is older than the {keep_days}-day deduplication window"
            " (DEDUP_RETENTION_DAYS): a replay of it could not be recognised"
        )
    # the channel needs no check here: its pattern (events.decode) allows 32 characters at most
    visitor_id, recipient_id, channel = record.visitor_id, record.recipient_id, record.channel
    if (
        len(visitor_id) > MAX_TEXT
        or len(record.code) > MAX_TEXT
        or (recipient_id is not None and len(recipient_id) > MAX_TEXT)
    ):
        for name, text in (
            ("visitor_id", visitor_id),
            ("recipient_id", recipient_id),
            ("code", record.code),
        ):
            if text is not None and len(text) > MAX_TEXT:
                raise EventError(f"field {name!r} is longer than {MAX_TEXT} characters")
    is_bot = record.is_bot
    return Click(
        record.event_id,
        (occurred - _UNIX) // _MS,  # exact: a float's timestamp() may lose a millisecond
        record.link_id,
        record.campaign_id,
        record.org_id,
        record.campaign_kind,
        channel,
        f"r:{recipient_id}" if recipient_id else visitor_id,
        is_bot,
        record.outcome in events.AFTER_EXPIRY,
        events.bot_kind(record.bot_reason) if is_bot else None,
        recipient_id or None,
        occurred.date(),
        occurred,
        record.code,
    )
