"""Redis: a connection with bounded retries at start-up, and the boundary where redis-py's errors
become ours (`errors`, and `get`, `get_many` and `set_all` for the redirector's cache reads and
writes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.errors import Boundary, DependencyError
from shared.settings import RedisSettings, mask_url

log = logging.getLogger(__name__)

_FAILURES = (RedisError, OSError)
"""What redis-py raises when Redis is down, slow (its `TimeoutError` is a `RedisError`) or
refuses a command."""


def errors(what: str) -> Boundary:
    """A context manager that turns a redis-py error raised in it into a `DependencyError`
    (retriable) saying Redis failed while doing `what` ("writing counters")."""
    return Boundary(_FAILURES, lambda exc: _failed(what, exc))


def _failed(what: str, exc: BaseException) -> DependencyError:
    return DependencyError(f"Redis failed while {what}: {exc!r}; it is tried again later")


async def get(client: aioredis.Redis, key: str) -> bytes | None:
    """`GET key`; `DependencyError` if Redis fails (the redirector's hot path: no wrapper)."""
    try:
        value: Any = await client.get(key)  # bytes: the clients we make do not decode
    except _FAILURES as exc:
        raise _failed(f"reading {key}", exc) from exc
    return cast("bytes | None", value)


async def get_many(client: aioredis.Redis, keys: list[str]) -> list[bytes | None]:
    """`MGET keys` in one round trip; `DependencyError` if Redis fails."""
    try:
        values: Any = await client.mget(keys)
    except _FAILURES as exc:
        raise _failed("reading the cache", exc) from exc
    return cast("list[bytes | None]", values)


async def set_all(client: aioredis.Redis, values: dict[str, bytes], ttl_s: int) -> None:
    """`SET key value EX ttl_s` for each item, in one round trip (no transaction);
    `DependencyError` if Redis fails."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            for key, value in values.items():
                pipe.set(key, value, ex=ttl_s)
            await pipe.execute()
    except _FAILURES as exc:
        raise _failed("writing the cache", exc) from exc


@asynccontextmanager
async def redis_client(
    redis: RedisSettings, *, retries: int = 10, required: bool = True
) -> AsyncIterator[aioredis.Redis]:
    """A connected `redis.asyncio.Redis`, closed on exit; start-up pings `retries` times.

    With `required=False` (Redis as a cache) it pings once and, if Redis does not answer, logs
    it and hands out the client anyway: redis-py connects on the next command.
    """
    url = redis.url.reveal()
    client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        for attempt in range(retries, 0, -1):
            try:
                await client.ping()
                break
            except _FAILURES as exc:
                if not required:
                    log.warning(
                        "redis not reachable, starting without it",
                        extra={"url": mask_url(url), "error": repr(exc)},
                    )
                    break
                log.warning(
                    "redis not reachable", extra={"url": mask_url(url), "retries_left": attempt - 1}
                )
                if attempt == 1:
                    raise DependencyError(
                        f"cannot connect to Redis at {mask_url(url)}: {exc}; is the stack up?"
                    ) from exc
                await asyncio.sleep(1)
        yield client
    finally:
        await client.aclose()
