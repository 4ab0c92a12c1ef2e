"""Misses: taps on a short domain that led nowhere (an unknown or malformed code, a disabled
link, a code of another organisation, a wrong DLT header), counted per short domain, UTC day and
reason for operators (`clicktrack misses`).

They live in Redis, never in Postgres: one hash per UTC day (`misses:2026-12-02`), one field per
domain and reason (`s.acme.in unknown`), incremented by the redirectors in batches off the
response path (`services.redirector.misses`). Days are UTC because a miss often has no
organisation (an unknown code), and so no organisation's zone to count in. Kept `KEEP_DAYS`.
A redirector that dies loses at most its last second of misses: these are an operator's gauge
of typos, scanners and dead links, not counts anyone is billed for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import redis.asyncio as aioredis

from shared.redis_client import errors

REASONS = ("unknown", "malformed", "disabled", "wrong_domain", "wrong_header")
"""Why a tap missed: no such code; not even the shape of one; the code's link is disabled; the
code is another organisation's (asked for on this one's domain); the path's DLT header is not
the campaign's."""
KEEP_DAYS = 90
"""Days a day's hash is kept after its last increment."""
PREFIX = "misses:"


Miss = tuple[date, str, str, int]
"""Misses of one UTC day, domain and reason: (day, domain, reason, count)."""


def key(day: date) -> str:
    """The Redis key of a UTC day's misses."""
    return f"{PREFIX}{day.isoformat()}"


async def add(client: aioredis.Redis, tally: Mapping[tuple[date, str, str], int]) -> None:
    """Add `tally` ((UTC day, domain, reason) -> misses) in one round trip; `DependencyError`
    if Redis fails (nothing, or all of it, may have been added: the caller keeps it)."""
    with errors("counting misses"):
        async with client.pipeline(transaction=True) as pipe:
            days = set()
            for (day, domain, reason), n in tally.items():
                pipe.hincrby(key(day), f"{domain} {reason}", n)
                days.add(day)
            for day in days:
                pipe.expire(key(day), KEEP_DAYS * 86_400)
            await pipe.execute()


async def read(client: aioredis.Redis, last: date, days: int) -> list[Miss]:
    """The misses of the `days` UTC days up to `last`, by day, domain and reason."""
    wanted = [last - timedelta(days=i) for i in range(days)]
    with errors("reading misses"):
        async with client.pipeline(transaction=False) as pipe:
            for day in wanted:
                pipe.hgetall(key(day))
            found = await pipe.execute()
    misses: list[Miss] = []
    for day, fields in zip(wanted, found, strict=True):
        for field, count in fields.items():
            domain, _, reason = (field.decode() if isinstance(field, bytes) else field).partition(
                " "
            )
            misses.append((day, domain, reason, int(count)))
    return sorted(misses)
