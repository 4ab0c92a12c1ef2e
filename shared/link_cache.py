"""The Redis cache of short codes and links that redirectors read, and how a change reaches them.

Two kinds of keys, so that changing a link never means finding its (maybe million) codes:

    ct:code1:{code}   JSON {"link_id": int, "recipient_id": str | null}; or "-" for a code known
                      not to exist (a short-lived negative entry)
    ct:link1:{id}     JSON of the link's attributes the redirector needs (`LinkEntry`)

A code never moves to another link, so code entries only expire. Whoever changes a link
(destination, disabled, expiry, fallback) calls `invalidate_link`: it deletes the link's key
and publishes the id on `LINK_CHANGES`, and every redirector drops the link from its memory.
Redirectors also keep entries in memory only for a short TTL, so a lost message heals itself.
"""

from __future__ import annotations

import redis.asyncio as aioredis

LINK_CHANGES = "ct:links:changed"
NEGATIVE = b"-"


def code_key(code: str) -> str:
    """Redis key of a short code's entry."""
    return f"ct:code1:{code}"


def link_key(link_id: int) -> str:
    """Redis key of a link's entry."""
    return f"ct:link1:{link_id}"


async def invalidate_link(redis: aioredis.Redis, link_id: int) -> None:
    """Forget a changed link everywhere: Redis now, and each redirector's memory via pub/sub."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(link_key(link_id))
        pipe.publish(LINK_CHANGES, str(link_id))
        await pipe.execute()
