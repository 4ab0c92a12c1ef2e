"""Rate limits of the API, counted in Redis: per key (as authentication reads it), per client
address behind the trusted proxies, one budget for every API process, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from shared.settings import Settings
from tests.integration.api_client import ApiClient

pytestmark = pytest.mark.integration

FAILURES_BURST = Settings().api.auth_failures_burst
GUESSER, NEIGHBOUR = "203.0.113.7", "198.51.100.20"


@pytest.fixture
async def start_api(
    api_settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> AsyncIterator[Callable[[], Awaitable[ApiClient]]]:
    """Starts API processes (as test servers) behind a load balancer on 127.0.0.1, sharing one
    schema and one Redis database; each call gives a client of a new one."""
    limited = api_settings.changed(
        API_RATE_PER_S=1, API_RATE_BURST=5, API_TRUSTED_PROXIES=("127.0.0.1/32",)
    )
    async with AsyncExitStack() as stack:

        async def start() -> ApiClient:
            server = TestServer(create_app(limited), host="127.0.0.1")
            await server.start_server()
            stack.push_async_callback(server.close)
            http = aiohttp.ClientSession(base_url=str(server.make_url("")))
            stack.push_async_callback(http.close)
            return ApiClient(http)

        yield start


@pytest.fixture
async def slow_api(start_api: Callable[[], Awaitable[ApiClient]]) -> ApiClient:
    return await start_api()


async def _get(api: ApiClient, auth: str | None, *forwarded: str) -> aiohttp.ClientResponse:
    """GET /v1/campaigns with `auth` as the whole Authorization header, through the "load
    balancer": each `forwarded` is one X-Forwarded-For line, in order."""
    headers: list[tuple[str, str]] = [("X-Forwarded-For", line) for line in forwarded]
    if auth is not None:
        headers.append(("Authorization", auth))
    async with api.http.get("/v1/campaigns", headers=headers) as resp:
        await resp.read()
        return resp


async def test_a_key_over_its_rate_gets_429_and_others_go_on(slow_api: ApiClient) -> None:
    _, key_a = await slow_api.new_org("A")  # two operator calls each: 4 of the operator's 5
    _, key_b = await slow_api.new_org("B")
    for _ in range(5):
        await slow_api.call("GET", "/v1/campaigns", auth=key_a)
    body = await slow_api.call("GET", "/v1/campaigns", auth=key_a, expect=429)
    assert body["error"] == "rate_limited"
    resp = await _get(slow_api, f"Bearer {key_a}")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    await slow_api.call("GET", "/v1/campaigns", auth=key_b)  # B has its own bucket


async def test_one_more_space_is_the_same_key_and_the_same_budget(slow_api: ApiClient) -> None:
    """Today's bypass: the bucket hashed the raw header, authentication normalised it."""
    _, key = await slow_api.new_org("A")
    spellings = [f"Bearer {key}", f"Bearer  {key}", f"bearer {key}", f"BEARER   {key} "]
    statuses = [(await _get(slow_api, f"Bearer {' ' * n}{key}")).status for n in range(5)]
    assert statuses == [200] * 5
    for spelling in spellings:
        assert (await _get(slow_api, spelling)).status == 429, spelling


async def test_every_api_process_spends_one_budget(
    start_api: Callable[[], Awaitable[ApiClient]],
) -> None:
    first, second = await start_api(), await start_api()
    _, key = await first.new_org("A")
    statuses = [(await _get(api, f"Bearer {key}")).status for api in [first, second] * 3]
    assert statuses == [200, 200, 200, 200, 200, 429]
    resp = await _get(first, f"Bearer {key}")
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"


async def test_a_bad_key_flood_behind_the_load_balancer_refuses_no_other_client(
    slow_api: ApiClient,
) -> None:
    """Today's lockout: refused keys were counted per peer, and behind the load balancer every
    client has the load balancer's address."""
    _, key = await slow_api.new_org("A")
    for n in range(FAILURES_BURST):
        assert (await _get(slow_api, f"Bearer ck_guess{n}", GUESSER)).status == 401
    resp = await _get(slow_api, "Bearer ck_guess-next", GUESSER)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 5
    body = await resp.json()
    assert body["detail"].startswith("too many refused credentials from this address")
    # another client, through the same load balancer, with a key never used before
    assert (await _get(slow_api, f"Bearer {key}", NEIGHBOUR)).status == 200
    assert (await _get(slow_api, "Bearer ck_neighbour-typo", NEIGHBOUR)).status == 401


async def test_a_known_key_behind_the_guessers_nat_goes_on(slow_api: ApiClient) -> None:
    """A shared NAT: the guesser and a customer have one address. The customer's key has
    authenticated before, so the guesser's penalty is not the customer's; new guesses wait."""
    _, key = await slow_api.new_org("A")
    assert (await _get(slow_api, f"Bearer {key}", GUESSER)).status == 200
    for n in range(FAILURES_BURST):
        assert (await _get(slow_api, f"Bearer ck_guess{n}", GUESSER)).status == 401
    assert (await _get(slow_api, "Bearer ck_guess-next", GUESSER)).status == 429
    assert (await _get(slow_api, f"Bearer  {key}", GUESSER)).status == 200


async def test_the_client_is_the_rightmost_untrusted_hop_of_every_line(
    slow_api: ApiClient,
) -> None:
    """HAProxy appends its own X-Forwarded-For line: reading only the first line believed the
    client's forgery, so a guesser could spend another client's failure budget (or escape its
    own by forging a new address each time)."""
    for n in range(FAILURES_BURST):
        forged = f"192.0.2.{n + 1}"  # a different forged first line each time
        assert (await _get(slow_api, f"Bearer ck_guess{n}", forged, GUESSER)).status == 401
    assert (await _get(slow_api, "Bearer ck_guess-next", "192.0.2.200", GUESSER)).status == 429
    # the address the guesser forged is not penalised: its owner goes on
    assert (await _get(slow_api, "Bearer ck_typo", NEIGHBOUR, "192.0.2.1")).status == 401


async def test_without_a_trusted_proxy_the_header_is_not_believed(
    api_settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    server = TestServer(create_app(api_settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
            api = ApiClient(http)
            for n in range(FAILURES_BURST):
                assert (await _get(api, f"Bearer ck_guess{n}", f"192.0.2.{n + 1}")).status == 401
            assert (await _get(api, "Bearer ck_guess-next", "192.0.2.222")).status == 429
    finally:
        await server.close()


async def test_health_and_metrics_are_never_limited(slow_api: ApiClient) -> None:
    for _ in range(20):
        async with slow_api.http.get("/healthz") as resp:
            assert resp.status == 200
