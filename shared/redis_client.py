"""Redis connection with bounded retries at start-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.errors import DependencyError
from shared.settings import Settings, mask_url

log = logging.getLogger(__name__)


@asynccontextmanager
async def redis_client(
    settings: Settings, *, retries: int = 10, required: bool = True
) -> AsyncIterator[aioredis.Redis]:
    """A connected `redis.asyncio.Redis`, closed on exit; start-up pings `retries` times.

    With `required=False` (Redis as a cache) it pings once and, if Redis does not answer, logs
    it and hands out the client anyway: redis-py connects on the next command.
    """
    url = settings.redis_url.reveal()
    client = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        for attempt in range(retries, 0, -1):
            try:
                await client.ping()
                break
            except (RedisError, OSError) as exc:
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
