"""Code -> destination: Redis first, then Postgres (which repopulates Redis)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

CODE_SHAPE = re.compile(r"[0-9A-Za-z]{4,32}")
CACHE_TTL_S = 3600

_QUERY = """
SELECT l.id AS link_id, l.org_id, l.campaign_id, l.destination, l.disabled,
       c.recipient_id, cp.kind AS campaign_kind, coalesce(cp.channel, 'sms') AS channel
FROM codes c
JOIN links l ON l.id = c.link_id
LEFT JOIN campaigns cp ON cp.id = l.campaign_id
WHERE c.code = $1
"""


@dataclass(frozen=True, slots=True)
class Target:
    """What a code resolves to: where to send the visitor, and what to record of the click."""

    destination: str
    link_id: int
    org_id: int
    campaign_id: int | None
    campaign_kind: str | None
    channel: str
    recipient_id: str | None


class Resolver:
    """Resolves short codes; disabled links and malformed codes resolve to nothing."""

    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis) -> None:
        self._pool = pool
        self._redis = redis

    async def resolve(self, code: str) -> Target | None:
        if not CODE_SHAPE.fullmatch(code):
            return None
        key = f"ct:code:{code}"
        cached = await self._redis.hgetall(key)
        if cached:
            return _from_cache({_text(k): _text(v) for k, v in cached.items()})
        row = await self._pool.fetchrow(_QUERY, code)
        if row is None or row["disabled"]:
            return None
        target = Target(
            destination=row["destination"],
            link_id=row["link_id"],
            org_id=row["org_id"],
            campaign_id=row["campaign_id"],
            campaign_kind=row["campaign_kind"],
            channel=row["channel"],
            recipient_id=row["recipient_id"],
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=_to_cache(target))
            pipe.expire(key, CACHE_TTL_S)
            await pipe.execute()
        return target


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _to_cache(t: Target) -> dict[FieldT, EncodableT]:
    return {
        "destination": t.destination,
        "link_id": str(t.link_id),
        "org_id": str(t.org_id),
        "campaign_id": "" if t.campaign_id is None else str(t.campaign_id),
        "campaign_kind": t.campaign_kind or "",
        "channel": t.channel,
        "recipient_id": "" if t.recipient_id is None else t.recipient_id,
    }


def _from_cache(d: dict[str, str]) -> Target:
    return Target(
        destination=d["destination"],
        link_id=int(d["link_id"]),
        org_id=int(d["org_id"]),
        campaign_id=int(d["campaign_id"]) if d.get("campaign_id") else None,
        campaign_kind=d.get("campaign_kind") or None,
        channel=d.get("channel") or "sms",
        recipient_id=d.get("recipient_id") or None,
    )
