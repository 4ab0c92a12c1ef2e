"""The broker dies under traffic: every request still gets its 302, every click waits in the
click log, and after the broker comes back every click is on the topic (an event may be there
twice).

Runs its own Kafka on free ports (deploy/stack.sh, a temporary STACK_DIR): the shared broker is
never touched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import orjson
import pytest

from shared.kafka import ensure_topics
from shared.links import create_link, create_org
from shared.settings import Settings
from tests.faults.broker import OwnBroker
from tests.helpers import read_topic
from tests.integration.redirector_support import Running, redirector, wait_readiness

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, service_addresses: dict[str, str]
) -> Iterator[OwnBroker]:
    """One broker for the module; each test leaves it running (it restarts it after a kill)."""
    own = OwnBroker(tmp_path_factory.mktemp("own-kafka"), service_addresses)
    own.up()
    try:
        yield own
    finally:
        own.down()


@pytest.fixture
async def outage_settings(
    settings: Settings, broker: OwnBroker, pool: asyncpg.Pool
) -> AsyncIterator[Settings]:
    own = settings.changed(KAFKA_BOOTSTRAP_SERVERS=broker.address, PUBLISH_SEND_TIMEOUT_MS=2000)
    await ensure_topics(own.kafka)
    yield own


@pytest.fixture
async def code(pool: asyncpg.Pool) -> str:
    """The short code of a fresh link."""
    org_id = await create_org(pool, "Acme", tracking=True)
    return (
        await create_link(
            pool, org_id=org_id, destination=DESTINATION, code_length=Settings().links.code_length
        )
    ).codes[None]


class Traffic:
    """Sends clicks, each with its own user agent so that each is recognisable on the topic."""

    def __init__(self, app: Running, code: str) -> None:
        self._url = f"{app.url}/{code}"
        self.sent: list[str] = []
        self.statuses: list[int] = []

    async def burst(
        self, http: aiohttp.ClientSession, tag: str, count: int, concurrency: int = 10
    ) -> None:
        async def one(i: int) -> None:
            ua = f"{PHONE} {tag}/{i}"
            async with http.get(
                self._url, headers={"User-Agent": ua}, allow_redirects=False
            ) as resp:
                self.statuses.append(resp.status)
                self.sent.append(ua)

        for start in range(0, count, concurrency):
            await asyncio.gather(*(one(i) for i in range(start, min(start + concurrency, count))))


@pytest.mark.timeout(420)
async def test_a_broker_outage_loses_no_click(
    outage_settings: Settings, broker: OwnBroker, code: str
) -> None:
    settings = outage_settings
    async with redirector(settings) as app, aiohttp.ClientSession() as http:
        traffic = Traffic(app, code)
        await traffic.burst(http, "before", 100)
        assert await wait_readiness(app, 200, seconds=0) == 200

        await asyncio.to_thread(broker.kill)
        await traffic.burst(http, "outage", 300)
        # A dead broker shows as the first batch that is not acknowledged within the send
        # timeout (2 s here); the clicks may all be answered before that: poll, bounded (30 s).
        assert await wait_readiness(app, 503, seconds=30) == 503
        assert app.redirector.publisher.spooling

        restart = asyncio.create_task(asyncio.to_thread(broker.up))
        while not restart.done():  # clicks keep coming while the broker boots
            await traffic.burst(http, f"restart{len(traffic.sent)}", 20)
            await asyncio.sleep(0.2)
        await restart
        assert await wait_readiness(app, 200, seconds=60) == 200  # Kafka takes the log again
        await traffic.burst(http, "after", 100)
        assert app.metric("clicktrack_events_logged_total") == len(traffic.sent)
    assert traffic.statuses == [302] * len(traffic.sent)
    assert app.metric("clicktrack_events_dropped_total") == 0
    assert app.metric("clicktrack_events_sent_total") >= len(traffic.sent)  # resends count
    assert app.redirector.publisher.log.unshipped_bytes == 0
    assert [p for p in os.listdir(settings.redirector.spool_dir) if p.startswith("clicks-")] == []

    records = await read_topic(
        settings, settings.kafka.clicks_topic, len(traffic.sent) * 2, seconds=15
    )
    bodies = [orjson.loads(r.value) for r in records]
    by_ua = {b["user_agent"] for b in bodies}
    assert by_ua == set(traffic.sent)  # every click made it to the topic
    assert len({b["event_id"] for b in bodies}) == len(traffic.sent)  # one event id per click
    assert len(bodies) >= len(traffic.sent)  # replays may have written some twice


@pytest.mark.timeout(300)
async def test_a_stop_while_the_broker_is_down_keeps_the_clicks_for_the_next_start(
    outage_settings: Settings, broker: OwnBroker, code: str
) -> None:
    settings = outage_settings
    async with redirector(settings) as app, aiohttp.ClientSession() as http:
        traffic = Traffic(app, code)
        await traffic.burst(http, "up", 50)
        await asyncio.to_thread(broker.kill)
        await traffic.burst(http, "down", 50)
    # Shut down (SIGTERM path) with the broker dead: the clicks wait in the log, on disk.
    assert traffic.statuses == [302] * 100
    assert app.metric("clicktrack_events_dropped_total") == 0
    await asyncio.to_thread(broker.up)
    async with redirector(settings) as again, aiohttp.ClientSession() as http:
        assert await wait_readiness(again, 200, seconds=60) == 200
    records = await read_topic(settings, settings.kafka.clicks_topic, 200, seconds=10)
    assert {orjson.loads(r.value)["user_agent"] for r in records} == set(traffic.sent)
