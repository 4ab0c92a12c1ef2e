"""Click counters in Redis: key layout, and writes that can only move a counter up.

Postgres holds the truth; Redis holds copies for fast reads. The counter writes the absolute
values Postgres returned through `SET_IF_GREATER`, so a replayed batch or two writers landing out
of order can never move a value backwards, and Redis can be rebuilt from Postgres at any time.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

FIELDS = ("total", "unique", "bots")

# KEYS: one hash per link. ARGV: the values, len(FIELDS) per key, in FIELDS order.
SET_IF_GREATER = """
local fields = {'total', 'unique', 'bots'}
local n = #fields
for k = 1, #KEYS do
  for f = 1, n do
    local new = tonumber(ARGV[(k - 1) * n + f])
    local cur = tonumber(redis.call('HGET', KEYS[k], fields[f]) or '-1')
    if new > cur then
      redis.call('HSET', KEYS[k], fields[f], new)
    end
  end
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class LinkCounts:
    """Counts of one link: human clicks, distinct human visitors, and bot hits apart."""

    link_id: int
    total: int
    unique: int
    bots: int = 0


def link_key(link_id: int) -> str:
    return f"ct:link:{link_id}"


class CountStore:
    """Reads and monotonic writes of link counters in one Redis database."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._set_if_greater = client.register_script(SET_IF_GREATER)

    async def raise_to(self, counts: list[LinkCounts]) -> None:
        """Set each counter to the given value unless Redis already holds a greater one."""
        if not counts:
            return
        keys = [link_key(c.link_id) for c in counts]
        args = [v for c in counts for v in (c.total, c.unique, c.bots)]
        await self._set_if_greater(keys=keys, args=args)

    async def get(self, link_id: int) -> LinkCounts | None:
        """The counts of a link, or None if Redis has none."""
        raw = await self._client.hgetall(link_key(link_id))
        if not raw:
            return None
        values = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
        return LinkCounts(
            link_id, values.get("total", 0), values.get("unique", 0), values.get("bots", 0)
        )
