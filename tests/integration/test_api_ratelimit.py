"""Per-key rate limits of the API: one key over its rate gets 429, others go on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from services.api.app import create_app
from shared.settings import Settings
from tests.integration.api_client import ApiClient

pytestmark = pytest.mark.integration


@pytest.fixture
async def slow_api(api_settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[ApiClient]:
    limited = api_settings.changed(API_RATE_PER_S=1, API_RATE_BURST=5)  # per caller
    server = TestServer(create_app(limited), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession(base_url=str(server.make_url(""))) as http:
        yield ApiClient(http)
    await server.close()


async def test_a_key_over_its_rate_gets_429_and_others_go_on(slow_api: ApiClient) -> None:
    _, key_a = await slow_api.new_org("A")  # two operator calls each: 4 of the operator's 5
    _, key_b = await slow_api.new_org("B")
    for _ in range(5):
        await slow_api.call("GET", "/v1/campaigns", auth=key_a)
    body = await slow_api.call("GET", "/v1/campaigns", auth=key_a, expect=429)
    assert body["error"] == "rate_limited"
    async with slow_api.http.get(
        "/v1/campaigns", headers={"Authorization": f"Bearer {key_a}"}
    ) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
    await slow_api.call("GET", "/v1/campaigns", auth=key_b)  # B has its own bucket


async def test_guessing_keys_is_slowed_per_address(slow_api: ApiClient) -> None:
    _, key = await slow_api.new_org("A")
    # Each guess is a different credential, so per-key buckets never fill: the address's
    # failure bucket does (20 refused credentials, then one per 5 s).
    for n in range(Settings().api.auth_failures_burst):
        await slow_api.call("GET", "/v1/campaigns", auth=f"ck_guess{n}", expect=401)
    body = await slow_api.call("GET", "/v1/campaigns", auth="ck_guess-next", expect=429)
    assert body["detail"].startswith("too many refused credentials from this address")
    # from that address even a good key waits: the guesser cannot hide among good requests
    await slow_api.call("GET", "/v1/campaigns", auth=key, expect=429)


async def test_health_and_metrics_are_never_limited(slow_api: ApiClient) -> None:
    for _ in range(20):
        async with slow_api.http.get("/healthz") as resp:
            assert resp.status == 200
