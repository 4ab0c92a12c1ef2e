"""Listens for link changes on Redis pub/sub: drops those links (or an organisation's links, or
codes whose recipient was erased) from the resolver's memory, and reloads the short domains when
they changed."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

import redis.asyncio as aioredis

from services.redirector.hosts import Hosts
from services.redirector.metrics import RedirectorMetrics
from services.redirector.resolve import Resolver
from shared.errors import DependencyError
from shared.link_cache import CODES_MESSAGE, DOMAINS_CHANGED, ORG_PREFIX, changes_channel
from shared.redis_client import errors
from shared.service import cancel

log = logging.getLogger(__name__)

RETRY_S = 1.0
POLL_S = 0.5


class LinkChanges:
    """A background task subscribed to the link changes of its Redis database
    (`changes_channel`); `start()` / `stop()` (idempotent).

    While the subscription is down, messages are lost: on every (re)subscription the resolver's
    link memory is cleared, so nothing older than the outage is served from memory.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        resolver: Resolver,
        metrics: RedirectorMetrics,
        hosts: Hosts | None = None,
    ) -> None:
        self._redis = redis
        self._resolver = resolver
        self._hosts = hosts
        self._m = metrics
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="link-changes")

    async def stop(self) -> None:
        # The loop polls a flag instead of being cancelled mid-read: cancelling a redis-py read
        # inside its own timeout can be swallowed on Python 3.11 and leave the task hanging.
        self._stopping = True
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=POLL_S * 3)
            if not done:
                await cancel(self._task)
            self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._listen()
            except DependencyError as exc:
                self.subscribed.clear()
                log.warning("link-change subscription lost", extra={"error": repr(exc)})
                await asyncio.sleep(RETRY_S)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            with errors("listening to link changes"):
                await pubsub.subscribe(changes_channel(self._redis))
                self._resolver.forget_links()
                if self._hosts is not None:
                    self._hosts.reload_soon()
                self.subscribed.set()
                while not self._stopping:
                    message = await pubsub.get_message(timeout=POLL_S)
                    if message is not None:
                        self._forget(message)
        finally:
            with suppress(DependencyError), errors("closing the link-change subscription"):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _forget(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        if text.startswith(CODES_MESSAGE):
            self._m.invalidations.inc()
            for code in text.removeprefix(CODES_MESSAGE).split(","):
                self._resolver.forget_code(code)
            return
        try:
            if text == DOMAINS_CHANGED:
                if self._hosts is not None:
                    self._hosts.reload_soon()
            elif text.startswith(ORG_PREFIX):
                self._resolver.forget_org(int(text.removeprefix(ORG_PREFIX)))
            else:
                self._resolver.forget_link(int(text))
        except ValueError:
            log.warning("ignored malformed link-change message")
            return
        self._m.invalidations.inc()
