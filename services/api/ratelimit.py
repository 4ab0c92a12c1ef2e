"""Per-caller rate limits of the API, kept in Redis so that every API process spends one budget.

Who is a caller:
- a request with a bearer credential is its credential, normalised as authentication reads it
  (`auth.bearer_credential`: `Bearer  KEY` and `bearer KEY` are one caller), by its SHA-256,
  never the credential itself;
- a request without one is its client address, the rightmost untrusted hop of the
  `X-Forwarded-For` chain behind `API_TRUSTED_PROXIES` (`shared.client_address`), else the peer.

Guessing keys is slowed apart: every 401 spends a token of the client address's failure bucket
(`API_AUTH_FAILURES_BURST`, then one per 5 s). While that bucket is empty the address gets 429
for any credential that has not authenticated before (`KNOWN_TTL_S`): a guesser cannot hide among
good requests, and a valid key behind the same NAT as a guesser goes on working. Behind the load
balancer every client has its own address, so a flood of bad keys never touches another client.

Each bucket is a GCRA (generic cell rate algorithm) state in one Redis key: the theoretical
arrival time of the next request, in ms of Redis's own clock (`TIME`), so the API processes need
not agree on the time. One script call decides a request; a refused credential costs one more.
When Redis does not answer within `API_REDIS_BUDGET_MS` the request is let through and counted
(`clicktrack_api_rate_limit_unavailable`): the limits protect the service, and an API that
refuses everyone while Redis restarts would be the outage they are meant to prevent.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.typedefs import Middleware

from services.api.auth import CALLER, bearer_credential
from services.api.context import METRICS, REDIS
from services.api.errors import Handler, error_response
from shared.client_address import ClientAddress
from shared.errors import DependencyError
from shared.redis_client import errors as redis_errors

log = logging.getLogger(__name__)

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
AUTH_FAILURES_PER_S = 0.2
"""Sustained rate of refused credentials one address may send (one per 5 s)."""
KNOWN_TTL_S = 30 * 86_400
"""How long a credential that authenticated stays known (passes an address's failure penalty)."""
PREFIX = "ct:rl:"
"""Prefix of every rate-limit key in Redis; the Postgres schema follows it (`key_prefix`)."""
BREAK_S = 1.0
"""After Redis failed, requests go unlimited without asking it for this long, seconds: a Redis
that times out would otherwise add its timeout to every request."""

# KEYS[1]: the address's failure bucket; KEYS[2]: the credential's "known" marker (or a key that
# never exists); KEYS[3]: the caller's bucket. ARGV: failure interval ms, failure burst, caller
# interval ms, caller burst. Returns {why, wait ms, known}: why 0 allowed (the caller's token is
# spent), 1 the address is over its refused credentials, 2 the caller over its rate.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function wait(key, interval, burst, spend)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local next_tat = tat + interval
  local late = next_tat - interval * burst - now
  if late > 0 then return math.ceil(late) end
  if spend then redis.call('SET', key, next_tat, 'PX', math.ceil(next_tat - now) + 1) end
  return 0
end
local known = redis.call('EXISTS', KEYS[2])
if known == 0 then
  local w = wait(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), false)
  if w > 0 then return {1, w, known} end
end
local w = wait(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]), true)
if w > 0 then return {2, w, known} end
return {0, 0, known}
"""

# KEYS[1]: a bucket; ARGV: interval ms, burst. Spends a token if there is one.
_SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + tonumber(ARGV[1])
if next_tat - tonumber(ARGV[1]) * tonumber(ARGV[2]) - now > 0 then return 0 end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1)
return 1
"""


@dataclass(frozen=True, slots=True)
class Limits:
    """The rates: `rate` requests per second per caller with bursts of `burst`, and refused
    credentials per address at `AUTH_FAILURES_PER_S` with bursts of `failures_burst`."""

    rate: float
    burst: int
    failures_burst: int
    failures_rate: float = AUTH_FAILURES_PER_S


def key_prefix(schema: str) -> str:
    """`ct:rl:<schema>:`: the deployment's organisations and keys live in its Postgres schema, so
    two deployments sharing a Redis (or two tests) never share a bucket."""
    return f"{PREFIX}{schema}:"


def caller_key(credential: str | None, address: str | None, prefix: str = PREFIX) -> str:
    """The Redis key of a caller's bucket: its credential's hash, else its address."""
    if credential is not None:
        return prefix + "key:" + _digest(credential)
    return prefix + f"addr:{address}"


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def middleware(limits: Limits, client: ClientAddress, prefix: str) -> Middleware:
    """An aiohttp middleware answering 429 with Retry-After once a caller is over its rate, or
    its address over its refused credentials (`Limits`), as counted in Redis (`app[REDIS]`)
    under `prefix` (`key_prefix`)."""
    admit_script: Any = None
    spend_script: Any = None
    skip_until = 0.0
    failure_args = (1000 / limits.failures_rate, limits.failures_burst)
    caller_args = (1000 / limits.rate, limits.burst)

    @web.middleware
    async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal admit_script, spend_script, skip_until
        if request.path in EXEMPT or time.monotonic() < skip_until:
            return await handler(request)
        redis: aioredis.Redis = request.app[REDIS]
        if admit_script is None:
            admit_script = redis.register_script(_ADMIT)
            spend_script = redis.register_script(_SPEND)
        address = client.of(request.remote, request.headers.getall("X-Forwarded-For", ()))
        credential = bearer_credential(request.headers.get("Authorization", ""))
        failures = prefix + f"fail:{address}"
        known = prefix + "known:" + (_digest(credential) if credential is not None else "-")
        try:
            with redis_errors("admitting a request"):
                why, wait_ms, was_known = await admit_script(
                    keys=[failures, known, caller_key(credential, address, prefix)],
                    args=[*failure_args, *caller_args],
                    client=redis,
                )
        except DependencyError as exc:
            skip_until = time.monotonic() + BREAK_S
            _unavailable(request, exc)
            return await handler(request)
        if why == 1:
            return _too_many(wait_ms, "too many refused credentials from this address")
        if why == 2:
            return _too_many(
                wait_ms,
                f"more than {limits.rate:g} requests per second (bursts of {limits.burst})"
                " from this caller",
            )
        response = await handler(request)
        try:
            with redis_errors("recording a request"):
                if response.status == 401:
                    await spend_script(keys=[failures], args=list(failure_args), client=redis)
                elif credential is not None and not was_known and CALLER in request:
                    await redis.set(known, b"1", ex=KNOWN_TTL_S)
        except DependencyError as exc:
            skip_until = time.monotonic() + BREAK_S
            _unavailable(request, exc)
        return response

    return rate_limit


def _unavailable(request: web.Request, exc: BaseException) -> None:
    request.app[METRICS].rate_limit_unavailable.inc()
    log.warning("rate limits not checked: Redis failed", extra={"error": repr(exc)})


def _too_many(wait_ms: int, why: str) -> web.Response:
    wait_s = max(1, math.ceil(wait_ms / 1000))
    response = error_response(429, "rate_limited", f"{why}; retry in {wait_s} s")
    response.headers["Retry-After"] = str(wait_s)
    return response
