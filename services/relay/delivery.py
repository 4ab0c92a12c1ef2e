"""One webhook delivery: a signed POST, retried with exponential backoff until it succeeds or the
attempts run out.

The body is `{"type": "clicks.v1", "timestamp": ..., "data": {"events": [...]}}`: each event is
exactly the `clicks.v1` record (same schema, same `event_id`). A 2xx answer is success; anything
else (other status, redirect, timeout, refused connection) is retried after
backoff * 2^(attempt-1), jittered between half and all of it, honouring a `Retry-After` of a
429/503 up to the same cap (`BACKOFF_CAP_S`); an endpoint that just failed every retry gets one
attempt per delivery for a minute. At most `RESPONSE_MAX_BYTES` of an answer is read.
Redirects are not followed: a redirect could lead anywhere. Names are resolved through a
resolver that refuses private addresses, so an endpoint's DNS cannot be turned against us later.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.relay import signing
from services.relay.endpoints import Endpoint, is_public_address, is_public_host
from shared.errors import DeliveryError
from shared.events import ClickEvent, utc_now_iso

USER_AGENT = "Clicktrack-Webhooks/1"
BACKOFF_CAP_S = 60.0
"""Longest wait before a retry, seconds, whatever `Retry-After` asks: with 6 attempts a
delivery ends within about 6 minutes (each endpoint has its own lane, so this bounds only how
long its own deliveries and the committed offsets wait)."""
COOLDOWN_S = 60.0
RESPONSE_MAX_BYTES = 64 * 1024
"""Most of an endpoint's answer read: its body means nothing to us, and an endpoint that sends
a huge or endless one must not hold the lane or the memory."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended: delivered or not, after how many attempts, and the last error."""

    delivered: bool
    attempts: int
    error: str | None
    msg_id: str
    body: bytes


def message_id(endpoint: Endpoint, events: Sequence[ClickEvent]) -> str:
    """`msg_<hex>`: the same for the same events to the same endpoint, so retries share it."""
    digest = hashlib.sha256(str(endpoint.id).encode())
    for e in events:
        digest.update(e.event_id.encode())
    return "msg_" + digest.hexdigest()[:32]


def payload(events: Sequence[ClickEvent]) -> bytes:
    """The JSON body of one delivery (msgspec: it writes a `ClickEvent` as the topic does)."""
    return msgspec.json.encode(
        {"type": "clicks.v1", "timestamp": utc_now_iso(), "data": {"events": events}}
    )


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, but drops every non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public_address(ipaddress.ip_address(r["host"]))]
        if not public:
            raise OSError(f"{host} resolves only to private addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class Deliverer:
    """Posts batches of events to endpoints over one HTTP session (an async context manager)."""

    def __init__(
        self,
        *,
        max_attempts: int,
        backoff_s: float,
        timeout_s: float,
        allow_insecure: bool,
    ) -> None:
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.allow_insecure = allow_insecure
        self._session: aiohttp.ClientSession | None = None
        self._cooling_until: dict[int, float] = {}
        """Endpoint id -> monotonic time until which it gets a single attempt."""

    async def __aenter__(self) -> Deliverer:
        resolver = None if self.allow_insecure else PublicOnlyResolver()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, limit=100),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": USER_AGENT},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def deliver(self, endpoint: Endpoint, events: Sequence[ClickEvent]) -> Outcome:
        """POST `events` to `endpoint`, retrying; never raises for the endpoint's failures.

        An endpoint whose last delivery failed every retry gets a single attempt per delivery
        for `COOLDOWN_S`: a dead endpoint must not hold the relay (and every other
        organisation's webhooks) through a full backoff on each batch.
        """
        msg_id = message_id(endpoint, events)
        body = payload(events)
        cooling = self._cooling_until.get(endpoint.id, 0.0) > time.monotonic()
        attempts = 1 if cooling else self.max_attempts
        error: str | None = None
        for attempt in range(1, attempts + 1):
            try:
                await self._post(endpoint, msg_id, body)
                self._cooling_until.pop(endpoint.id, None)
                return Outcome(True, attempt, None, msg_id, body)
            except DeliveryError as exc:
                error = str(exc)
                if not exc.retriable:
                    attempts = attempt
                    break
                if attempt < attempts:
                    await asyncio.sleep(self._delay(attempt, exc))
        self._cooling_until[endpoint.id] = time.monotonic() + COOLDOWN_S
        return Outcome(False, attempts, error, msg_id, body)

    async def _post(self, endpoint: Endpoint, msg_id: str, body: bytes) -> None:
        assert self._session is not None
        host = urlsplit(endpoint.url).hostname or ""
        if not self.allow_insecure and not is_public_host(host):
            raise DeliveryError("the endpoint's host is not a public address", retriable=False)
        headers = {
            "Content-Type": "application/json",
            **signing.headers(endpoint.secret.reveal(), msg_id, body),
        }
        try:
            async with self._session.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.content.read(RESPONSE_MAX_BYTES)
                if 200 <= resp.status < 300:
                    return
                raise DeliveryError(
                    f"endpoint answered {resp.status}", retry_after_s=_retry_after(resp)
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryError(f"endpoint unreachable: {type(exc).__name__}") from exc

    def _delay(self, attempt: int, exc: DeliveryError) -> float:
        cap = min(BACKOFF_CAP_S, self.backoff_s * 2 ** (attempt - 1))
        if exc.retry_after_s is not None:
            return min(exc.retry_after_s, BACKOFF_CAP_S)
        return random.uniform(cap / 2, cap)  # jitter: endpoints recovering are not stampeded


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    if resp.status not in (429, 503):
        return None
    raw = resp.headers.get("Retry-After", "")
    return float(raw) if raw.isdigit() else None
