"""The Redis cache of short codes and links that redirectors read, and how a change reaches them.

Two kinds of keys, so that changing a link never means finding its (maybe million) codes:

    ct:code1:{code}   JSON {"link_id": int, "recipient_id": str | null}; or "-" for a code known
                      not to exist (a short-lived negative entry)
    ct:link1:{id}     JSON of the link's attributes the redirector needs (`LinkEntry`)

A code never moves to another link, so code entries only expire, or are dropped when their
recipient is erased (`invalidate_codes`: the message is `codes:` and the codes, comma-separated,
on the same channel). Whoever changes a link
(destination, disabled, expiry, fallback) calls `invalidate_link`: it deletes the link's key
and publishes the id on `LINK_CHANGES`, and every redirector drops the link from its memory.
Redirectors also keep entries in memory only for a short TTL, so a lost message heals itself.

Two more messages travel on `LINK_CHANGES`: `org:{id}` when an organisation's link tracking is
switched (its links' keys are deleted first, `invalidate_org`; each redirector drops the
organisation's links from memory), and `domains` when a short domain is added, moved or removed
(each redirector reloads its table of hosts, `domains_changed`).

Whoever mints codes calls `cache_codes` once they are committed: their entries are written
(`CODE_CACHE_TTL_S`), so the first tap of a fresh code is one Redis read and no Postgres query.
(The redirectors' filter of minted codes learns them from Postgres itself: migration 0071.)

Every key here has a TTL: with `maxmemory-policy volatile-lru` Redis evicts only these cache
entries under memory pressure, never the counters (`shared/counts.py`), which have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis

from shared.redis_client import errors

LINK_CHANGES = "ct:links:changed"
"""The channel of link changes on Redis database 0; see `changes_channel`."""
NEGATIVE = b"-"
DOMAINS_CHANGED = "domains"
"""The message that makes every redirector reload its table of short domains."""
ORG_PREFIX = "org:"
"""`org:{id}`: forget every link of that organisation."""
_UNLINK_CHUNK = 1000
CACHE_CHUNK = 10_000
"""Codes per Redis pipeline when caching minted codes."""

CodeRow = tuple[str, int, str | None]
"""A minted code, its link id and its recipient (None: the link's shared code)."""


def changes_channel(redis: aioredis.Redis) -> str:
    """The pub/sub channel of link changes for the client's Redis database.

    Pub/sub ignores the database number, so two stacks sharing one Redis server in different
    databases (a test suite beside `make up`, two suites at once) would otherwise drop each
    other's links from memory, and a test that relies on a link staying cached fails at random.
    Database 0, the production one, keeps the bare name `LINK_CHANGES`.
    """
    db = int(redis.connection_pool.connection_kwargs.get("db") or 0)
    return LINK_CHANGES if db == 0 else f"{LINK_CHANGES}:{db}"


def code_key(code: str) -> str:
    """Redis key of a short code's entry."""
    return f"ct:code1:{code}"


def link_key(link_id: int) -> str:
    """Redis key of a link's entry."""
    return f"ct:link1:{link_id}"


def code_entry(link_id: int, recipient_id: str | None) -> bytes:
    """The value of a code's key."""
    return orjson.dumps({"link_id": link_id, "recipient_id": recipient_id})


async def cache_codes(redis: aioredis.Redis, rows: Sequence[CodeRow], ttl_s: int) -> None:
    """Write minted codes to the cache for `ttl_s` seconds, `CACHE_CHUNK` codes a round trip;
    `DependencyError` if Redis fails (the codes are minted all the same: a redirector then finds
    them in Postgres)."""
    with errors("caching minted codes"):
        for start in range(0, len(rows), CACHE_CHUNK):
            chunk = rows[start : start + CACHE_CHUNK]
            async with redis.pipeline(transaction=False) as pipe:
                for code, link_id, recipient in chunk:
                    pipe.set(code_key(code), code_entry(link_id, recipient), ex=ttl_s)
                await pipe.execute()


async def invalidate_link(redis: aioredis.Redis, link_id: int) -> int:
    """Forget a changed link everywhere: Redis now, and each redirector's memory via pub/sub;
    returns the keys deleted (0 or 1)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(link_key(link_id))
        pipe.publish(changes_channel(redis), str(link_id))
        done = await pipe.execute()
    return int(done[0])


async def invalidate_org(redis: aioredis.Redis, org_id: int, link_ids: list[int]) -> None:
    """Forget every link of an organisation (its tracking was switched): their Redis keys, in
    chunks, then each redirector's memory via pub/sub."""
    for start in range(0, len(link_ids), _UNLINK_CHUNK):
        chunk = link_ids[start : start + _UNLINK_CHUNK]
        await redis.unlink(*(link_key(link_id) for link_id in chunk))
    await redis.publish(changes_channel(redis), f"{ORG_PREFIX}{org_id}")


async def domains_changed(redis: aioredis.Redis) -> None:
    """Tell every redirector to reload its table of short domains."""
    await redis.publish(changes_channel(redis), DOMAINS_CHANGED)


CODES_MESSAGE = "codes:"
"""What starts a message on the link-change channel that names codes (comma-separated), not a
link."""


async def invalidate_codes(redis: aioredis.Redis, codes: Sequence[str]) -> int:
    """Forget these codes everywhere (their recipient was erased): Redis now, and each
    redirector's memory via pub/sub, up to 1,000 codes a message; returns the keys deleted."""
    deleted = 0
    for start in range(0, len(codes), _UNLINK_CHUNK):
        chunk = codes[start : start + _UNLINK_CHUNK]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(code_key(c) for c in chunk))
            pipe.publish(changes_channel(redis), CODES_MESSAGE + ",".join(chunk))
            done = await pipe.execute()
        deleted += int(done[0])
    return deleted
