"""The time window of a report: `?from=&to=&bucket=&tz=`, read into a `Window`.

The counters are kept per UTC hour, so a window holds whole UTC hours: those that start at or
after `from` and before `to` (both edges are moved up to a whole hour), and the answer states the
edges it used. Day buckets are the days of the named time zone, and a UTC hour belongs to the
local day its start falls in: in zones whose offset is not whole hours (Asia/Kolkata, +05:30) a
day's edges are therefore off by the offset's fraction of an hour (30 minutes for India: a local
day runs from 00:30 to 00:30).
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.errors import InvalidInputError

BUCKETS = ("hour", "day")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEFAULT_SPAN = timedelta(days=7)
"""Span of a window without `from`: the last 7 days."""
MAX_HOURS = 24 * 92
"""Most hour buckets in one window (92 days)."""
MAX_DAYS = 3_700
"""Most day buckets in one window (about 10 years)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open range [`start`, `end`) of whole UTC hours (aware: the first hour in the window
    and the first after it), cut into buckets (`bucket`: `hour` or `day`) of the time zone `tz`
    (an IANA name, `UTC` or `Asia/Kolkata`) in which its buckets and times are shown."""

    start: datetime
    end: datetime
    bucket: str
    tz: str

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.tz)

    def local(self, instant: datetime) -> datetime:
        """`instant` in the window's time zone."""
        return instant.astimezone(self.zone)

    def bucket_starts(self) -> Iterator[datetime]:
        """The start of every bucket, as UTC instants, in order (empty buckets included)."""
        if self.bucket == "hour":
            at = self.start
            while at < self.end:
                yield at
                at += HOUR
            return
        day = self.local(self.start).date()
        last = self.local(self.end - HOUR).date()
        while day <= last:
            yield _local_midnight(day, self.zone)
            day += DAY

    def as_dict(self) -> dict[str, str]:
        return {
            "from": self.local(self.start).isoformat(),
            "to": self.local(self.end).isoformat(),
            "bucket": self.bucket,
            "tz": self.tz,
        }


def _local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The instant a local day starts, as Postgres computes it (`local midnight AT TIME ZONE`)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(instant: datetime) -> datetime:
    floored = floor_hour(instant)
    return floored if floored == instant else floored + HOUR


def read_window(query: Mapping[str, str], *, now: datetime) -> Window:
    """The window of `?from=&to=&bucket=&tz=` (all optional).

    `from`/`to`: RFC 3339 timestamps with a zone, or `YYYY-MM-DD` (midnight in `tz`), each moved
    up to a whole UTC hour; default: the 7 days up to the end of the current hour. `bucket`:
    `hour` or `day`; default `hour` for spans up to 7 days, else `day`. `tz`: an IANA time zone
    name, default `UTC`. Raises `InvalidInputError`.
    """
    tz = query.get("tz", "UTC").strip() or "UTC"
    if tz not in _zone_names():
        raise InvalidInputError(
            f"tz must be an IANA time zone name such as UTC or Asia/Kolkata, got {tz[:64]!r}",
            code="invalid_tz",
        )
    zone = zoneinfo.ZoneInfo(tz)
    end = ceil_hour(_instant(query, "to", zone) or now)
    start_at = _instant(query, "from", zone)
    start = ceil_hour(start_at) if start_at is not None else end - DEFAULT_SPAN
    if start >= end:
        raise InvalidInputError("from must be before to", code="invalid_range")
    bucket = query.get("bucket") or ("hour" if end - start <= DEFAULT_SPAN else "day")
    if bucket not in BUCKETS:
        raise InvalidInputError("bucket must be hour or day", code="invalid_bucket")
    hours = (end - start) // HOUR
    if (bucket == "hour" and hours > MAX_HOURS) or hours > MAX_DAYS * 24:
        most = f"{MAX_HOURS} hours" if bucket == "hour" else f"{MAX_DAYS} days"
        raise InvalidInputError(
            f"the window holds more than {most}: narrow it or use bigger buckets",
            code="range_too_large",
        )
    return Window(start=start, end=end, bucket=bucket, tz=tz)


def _instant(query: Mapping[str, str], name: str, zone: zoneinfo.ZoneInfo) -> datetime | None:
    raw = query.get(name)
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(0), tzinfo=zone)
        parsed = datetime.fromisoformat(raw.replace(" ", "+"))  # a '+' unescaped in a URL
    except ValueError:
        raise _bad_time(name) from None
    if parsed.tzinfo is None:
        raise _bad_time(name)
    if not datetime(1970, 1, 1, tzinfo=UTC) <= parsed <= datetime(9000, 1, 1, tzinfo=UTC):
        raise _bad_time(name)
    return parsed


def _bad_time(name: str) -> InvalidInputError:
    return InvalidInputError(
        f"{name} must be a date (2026-11-26) or a timestamp with a zone (2026-11-26T10:00:00Z)",
        code="invalid_range",
        field=name,
    )
