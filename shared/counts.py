"""Click counters in Redis: key layout, and writes that can only move a counter up.

Postgres holds the truth; Redis holds copies for fast reads. The counter writes the absolute
values Postgres returned through `SET_IF_GREATER`, so a replayed batch or two writers landing out
of order can never move a value backwards, and Redis can be rebuilt from Postgres at any time.

Key layout (one Redis database, every key a hash with the fields `total`, `unique`, `bots`:
human clicks, distinct human visitors of the scope and period, and bot hits):

    ct:link:{link_id}                          all time, per link        (table link_counters)
    ct:campaign:{campaign_id}                  all time, per campaign    (campaign_counters)
    ct:link:{link_id}:day:{YYYY-MM-DD}         one UTC day, per link     (daily_counters)
    ct:campaign:{campaign_id}:day:{YYYY-MM-DD} one UTC day, per campaign (daily_counters)
    ct:meta:counters                           marker: a string (the UTC time of the last
                                               rebuild, and the run_id of the Redis process it
                                               was written to) present while Redis holds every
                                               counter

Hourly and per-channel series live in Postgres only (table hourly_counters).

The marker makes an emptied Redis (flushed, restarted without persistence, a new instance)
detectable: `SET_IF_GREATER` writes nothing and returns -1 when the marker is missing, and the
writer then rebuilds every key from Postgres (`services.counter.rebuild`) before it tries again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import redis.asyncio as aioredis

from shared.errors import RedisEmptyError
from shared.redis_client import errors

FIELDS = ("total", "unique", "bots")
MARKER_KEY = "ct:meta:counters"
SCOPES = ("link", "campaign")

# KEYS[1]: the marker (checked unless ARGV[1] is 'force'); KEYS[2..]: one hash per counter.
# ARGV[2..]: the values, len(FIELDS) per counter, in FIELDS order.
# Returns the number of counters written to, or -1 (nothing written) when the marker is missing.
SET_IF_GREATER = """
if ARGV[1] ~= 'force' and redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local fields = {'total', 'unique', 'bots'}
local n = #fields
for k = 2, #KEYS do
  for f = 1, n do
    local new = tonumber(ARGV[1 + (k - 2) * n + f])
    local cur = tonumber(redis.call('HGET', KEYS[k], fields[f]) or '-1')
    if new > cur then
      redis.call('HSET', KEYS[k], fields[f], new)
    end
  end
end
return #KEYS - 1
"""


@dataclass(frozen=True, slots=True)
class Counts:
    """The counters of one scope (`link` or `campaign`) over all time, or one UTC day."""

    scope: str
    scope_id: int
    total: int
    """Human clicks."""
    unique: int
    """Distinct human visitors in the scope and period."""
    bots: int = 0
    """Bot hits (link previews, scanners, HEAD requests), never in `total` or `unique`."""
    day: date | None = None
    """The UTC day these counts cover; None for all time."""

    @property
    def key(self) -> str:
        return counter_key(self.scope, self.scope_id, self.day)


def counter_key(scope: str, scope_id: int, day: date | None = None) -> str:
    """The Redis key of a counter: `ct:link:7`, `ct:campaign:3:day:2026-11-26`."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    base = f"ct:{scope}:{scope_id}"
    return base if day is None else f"{base}:day:{day.isoformat()}"


def link_key(link_id: int) -> str:
    return counter_key("link", link_id)


class CountStore:
    """Reads and monotonic writes of click counters in one Redis database."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._set_if_greater = client.register_script(SET_IF_GREATER)

    async def raise_to(self, counts: list[Counts], *, force: bool = False) -> None:
        """Set each counter to the given value unless Redis already holds a greater one.

        Raises `RedisEmptyError`, having written nothing, when the marker is missing (unless
        `force`, which the rebuild uses before it sets the marker).
        """
        if not counts:
            return
        keys = [MARKER_KEY, *(c.key for c in counts)]
        args: list[str | int] = ["force" if force else "check"]
        args.extend(v for c in counts for v in (c.total, c.unique, c.bots))
        with errors("writing counters"):
            written = await self._set_if_greater(keys=keys, args=args)
        if written == -1:
            raise RedisEmptyError(f"Redis has no {MARKER_KEY} key: rebuild it from Postgres")

    async def ping(self) -> bool:
        """True when Redis answers."""
        with errors("pinging"):
            return bool(await self._client.ping())

    async def mark_complete(self, when: str) -> None:
        """Set the marker: Redis now holds every counter (`when`: the rebuild's UTC time). It
        names the Redis process too (its `run_id`), for `is_complete`."""
        with errors("setting the counters' marker"):
            await self._client.set(MARKER_KEY, f"{when} {await self._run_id()}")

    async def is_complete(self) -> bool:
        """True while the marker is present and was set by this Redis process. A Redis that
        restarted (from its append-only file or a snapshot, a failover to a replica, a restore)
        has a new `run_id`, and may have lost the last writes before it stopped while keeping
        the marker: it is rebuilt as if it were empty, so no counter stays below Postgres."""
        with errors("looking for the counters' marker"):
            marker = await self._client.get(MARKER_KEY)
            if marker is None:
                return False
            text = marker.decode() if isinstance(marker, bytes) else marker
            return text.rsplit(" ", 1)[-1] == await self._run_id()

    async def _run_id(self) -> str:
        info = await self._client.info("server")
        return str(info["run_id"])

    async def get_counts(self, scope: str, scope_id: int, day: date | None = None) -> Counts | None:
        """The counters of a scope (and day), or None if Redis has none."""
        with errors("reading counters"):
            raw = await self._client.hgetall(counter_key(scope, scope_id, day))
        if not raw:
            return None
        values = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
        return Counts(
            scope,
            scope_id,
            values.get("total", 0),
            values.get("unique", 0),
            values.get("bots", 0),
            day,
        )

    async def get(self, link_id: int) -> Counts | None:
        """The all-time counts of a link, or None if Redis has none."""
        return await self.get_counts("link", link_id)
