"""The time window of a report: `?from=&to=&bucket=&tz=`, read into a `Window`.

The counters are kept per UTC quarter hour, and every real UTC offset (and every DST shift) is a
whole number of quarter hours, so the hours and days of every time zone are whole numbers of
quarters: a window holds whole quarters (its edges are moved up to one, which changes nothing for
a date or a whole local hour), and its buckets are exact local hours or days of `tz` (default:
the organisation's time zone). docs/counting.md says why quarters.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shared.errors import InvalidInputError
from shared.orgs import is_zone

BUCKETS = ("hour", "day")
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
DAY = timedelta(days=1)
DEFAULT_SPAN = timedelta(days=7)
"""Span of a window without `from`: the last 7 days."""
MAX_HOURS = 24 * 92
"""Most hour buckets in one window (92 days)."""
MAX_DAYS = 3_700
"""Most day buckets in one window (about 10 years)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open range [`start`, `end`) of whole UTC quarter hours (aware: the first quarter in
    the window and the first after it), cut into buckets (`bucket`: `hour` or `day`) of the time
    zone `tz` (an IANA name, `UTC` or `Asia/Kolkata`) in which its buckets and times are shown."""

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

    def edges(self) -> list[datetime]:
        """The start of every bucket that meets the window, as UTC instants, in order (empty
        buckets included): local hours or local days of `tz`. The first may start before the
        window (a day begun before `from`); a bucket holds the window's quarters from its start
        to the next one's."""
        zone = self.zone
        if self.bucket == "hour":
            # quarter by quarter: a local hour is the quarters that show one local date, hour and
            # offset (so +05:45 hours start at :15 UTC, the hour repeated when clocks go back is
            # two buckets, and an hour a DST change shortens to 30 minutes, Lord Howe's, is one)
            local = self.start.astimezone(zone)
            begin = self.start - timedelta(minutes=local.minute)
            if _hour_of(begin.astimezone(zone)) != _hour_of(local):
                begin = self.start  # the hour began before a change of offset: cut it there
            starts, last = [begin], _hour_of(local)
            at = self.start + QUARTER
            while at < self.end:
                key = _hour_of(at.astimezone(zone))
                if key != last:
                    starts.append(at)
                    last = key
                at += QUARTER
            return starts
        days = []
        day = self.local(self.start).date()
        last_day = self.local(self.end - QUARTER).date()
        while day <= last_day:
            days.append(_local_midnight(day, zone))
            day += DAY
        return days

    def as_dict(self) -> dict[str, str]:
        return {
            "from": self.local(self.start).isoformat(),
            "to": self.local(self.end).isoformat(),
            "bucket": self.bucket,
            "tz": self.tz,
        }


def _hour_of(local: datetime) -> tuple[date, int, timedelta | None]:
    """What makes a local hour one bucket: its date, hour and offset."""
    return local.date(), local.hour, local.utcoffset()


def _local_midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    """The first instant of a local day. Where the clocks skip midnight (a DST change at 00:00),
    `fold=0` reads the skipped midnight with the offset before the change: the instant of the
    change, which is when that day begins."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def floor_quarter(instant: datetime) -> datetime:
    utc = instant.astimezone(UTC)
    return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)


def ceil_quarter(instant: datetime) -> datetime:
    floored = floor_quarter(instant)
    return floored if floored == instant else floored + QUARTER


def read_window(query: Mapping[str, str], *, now: datetime, default_tz: str = "UTC") -> Window:
    """The window of `?from=&to=&bucket=&tz=` (all optional).

    `from`/`to`: RFC 3339 timestamps with a zone, or `YYYY-MM-DD` (midnight in `tz`), each moved
    up to a whole UTC quarter hour; default: the 7 days up to the end of the current quarter.
    `bucket`: `hour` or `day`; default `hour` for spans up to 7 days, else `day`. `tz`: an IANA
    time zone name, default `default_tz` (the organisation's). Raises `InvalidInputError`.
    """
    tz = query.get("tz", default_tz).strip() or default_tz
    if not is_zone(tz):
        raise InvalidInputError(
            f"tz must be an IANA time zone name such as UTC or Asia/Kolkata, got {tz[:64]!r}",
            code="invalid_tz",
        )
    zone = zoneinfo.ZoneInfo(tz)
    end = ceil_quarter(_instant(query, "to", zone) or now)
    start_at = _instant(query, "from", zone)
    start = ceil_quarter(start_at) if start_at is not None else end - DEFAULT_SPAN
    if start >= end:
        raise InvalidInputError("from must be before to", code="invalid_range")
    bucket = query.get("bucket") or ("hour" if end - start <= DEFAULT_SPAN else "day")
    if bucket not in BUCKETS:
        raise InvalidInputError("bucket must be hour or day", code="invalid_bucket")
    hours = (end - start) / HOUR
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
