"""From Kafka record to countable click: decode, check what counting relies on, or refuse.

`events.decode` checks the contract (JSON object, field types). The counter also needs a few
things the types do not say: a parsable `occurred_at` that is not in the future (it picks the hour
and the day partition), positive ids, and bounded sizes (every text ends up in an index). A record
that fails any check is refused with a reason and goes to the dead-letter topic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from shared import events
from shared.errors import EventError

MAX_TEXT = 256
"""Longest `visitor_id`, `channel` and `code` the counter accepts, characters."""
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_CLOCK_SKEW = timedelta(hours=1)
"""How far in the future `occurred_at` may be (the redirector's clock may run ahead)."""


@dataclass(frozen=True, slots=True)
class Click:
    """A decoded click event with the values counting needs, computed once."""

    event: events.ClickEvent
    event_id: str
    """The event id in canonical form (lower case, hyphens): the deduplication key."""
    occurred: datetime
    """`occurred_at`, UTC."""
    hour: datetime
    """`occurred_at` truncated to the hour, UTC."""
    day: date
    """`occurred_at`'s UTC day."""
    visitor: str
    """Who clicked, for the uniques: `r:<recipient_id>` when the code was minted for a recipient
    (the strongest identity, whatever the publisher put in `visitor_id`), else `visitor_id`."""


def admit(raw: bytes | None, *, max_bytes: int, now: datetime | None = None) -> Click:
    """The click in `raw`, or `EventError` saying why it cannot be counted.

    `max_bytes`: the largest record value accepted, bytes.
    """
    if raw is not None and len(raw) > max_bytes:
        raise EventError(f"record is {len(raw)} bytes, over the {max_bytes}-byte limit")
    event = events.decode(raw)
    try:
        occurred = datetime.fromisoformat(event.occurred_at)
    except ValueError:
        raise EventError(f"occurred_at {event.occurred_at[:64]!r} is not ISO 8601") from None
    if occurred.tzinfo is None:
        raise EventError("occurred_at has no time zone")
    occurred = occurred.astimezone(UTC)
    if occurred > (now or datetime.now(UTC)) + MAX_CLOCK_SKEW:
        raise EventError(f"occurred_at {event.occurred_at} is in the future")
    if occurred.year < 2000:
        raise EventError(f"occurred_at {event.occurred_at} is before 2000")
    for name in ("link_id", "org_id", "campaign_id"):
        value = getattr(event, name)
        if value is not None and not 0 < value < 2**63:
            raise EventError(f"field {name!r} is out of range")
    for name in ("visitor_id", "recipient_id", "channel", "code"):
        if len(getattr(event, name) or "") > MAX_TEXT:
            raise EventError(f"field {name!r} is longer than {MAX_TEXT} characters")
    if not event.channel:
        raise EventError("channel must not be empty")
    event_id = event.event_id
    if not _CANONICAL_UUID.fullmatch(event_id):
        event_id = str(UUID(event_id))  # decode checked it parses; make it one spelling
    return Click(
        event=event,
        event_id=event_id,
        occurred=occurred,
        hour=occurred.replace(minute=0, second=0, microsecond=0),
        day=occurred.date(),
        visitor=f"r:{event.recipient_id}" if event.recipient_id else event.visitor_id,
    )
