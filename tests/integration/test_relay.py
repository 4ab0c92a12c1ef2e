"""The webhook relay against real Kafka and Postgres, posting to a local receiver."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

from services.cli.main import cli
from services.relay import endpoints, signing
from services.relay.relay import Relay
from shared import audit, events
from shared.kafka import ensure_topics
from shared.orgs import create_org
from shared.sealing import Sealer
from shared.settings import Secret, Settings
from tests.helpers import read_topic, wait_for
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers `fail_first` requests per path with `status`."""

    fail_first: dict[str, int] = field(default_factory=dict)
    status: int = 500
    requests: dict[str, list[tuple[dict[str, str], bytes, int]]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = self.requests.setdefault(request.path, [])
        answer = self.status if len(seen) < self.fail_first.get(request.path, 0) else 204
        seen.append(({k.lower(): v for k, v in request.headers.items()}, body, answer))
        return web.Response(status=answer)

    def delivered_ids(self, path: str, secret: str) -> list[str]:
        """Event ids of the accepted requests to `path`, each signature checked."""
        ids = []
        for headers, body, answer in self.requests.get(path, []):
            signing.verify(secret, headers, body)
            if answer == 204:
                ids.extend(e["event_id"] for e in orjson.loads(body)["data"]["events"])
        return ids


@pytest.fixture
async def relay_settings(settings: Settings, topics: list[str]) -> Settings:
    """This test's settings for a relay: its own group and dead-letter topic, fast retries."""
    relay = settings.changed(
        RELAY_GROUP=f"relay-{settings.counter.group}",
        RELAY_START_FROM="earliest",
        WEBHOOK_DLQ_TOPIC=f"{settings.kafka.clicks_topic}.webhooks-dlq",
        WEBHOOK_ALLOW_INSECURE=True,
        WEBHOOK_BACKOFF_MS=20,
        WEBHOOK_MAX_ATTEMPTS=3,
    )
    await ensure_topics(relay.kafka, [relay.relay.webhook_dlq_topic])
    return relay


def sealer(settings: Settings) -> Sealer:
    """The sealer of webhook secrets the relay of `settings` opens them with."""
    return endpoints.secrets_sealer(settings.relay.webhook_secret_key)


async def publish(producer: AIOKafkaProducer, topic: str, *values: bytes) -> None:
    for value in values:
        await producer.send_and_wait(topic, value=value, key=b"k", partition=0)


async def register(
    pool: asyncpg.Pool, org_id: int, url: str, seal: Sealer
) -> tuple[endpoints.Endpoint, str]:
    """An endpoint registered as an operator would (the tests' URLs are plain http)."""
    return await endpoints.register(
        pool, org_id, url, allow_insecure=True, sealer=seal, operator="test", ticket=None
    )


async def test_relay_posts_each_org_its_human_clicks_signed_and_retries(
    relay_settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    receiver: tuple[Receiver, str],
) -> None:
    state, base = receiver
    state.fail_first = {"/a": 2}
    org_a, org_b, org_c = [await create_org(pool, n, tracking=True) for n in "ABC"]
    _, secret_a = await register(pool, org_a, f"{base}/a", sealer(relay_settings))
    _, secret_b = await register(pool, org_b, f"{base}/b", sealer(relay_settings))
    a = [make_event(org_id=org_a, visitor_id=f"v:{i}") for i in range(3)]
    a_bot = make_event(org_id=org_a, is_bot=True, bot_reason="head")
    b = [make_event(org_id=org_b, visitor_id=f"v:{i}") for i in range(2)]
    c = make_event(org_id=org_c)
    values = [events.encode(e) for e in (a[0], a_bot, b[0], a[1], c, b[1], a[2])]
    await publish(
        producer, relay_settings.kafka.clicks_topic, *values[:3], b"\x00junk", *values[3:]
    )

    relay = Relay(relay_settings)
    await relay.start()
    try:
        got_a = await wait_for(lambda: _ids(state, "/a", secret_a), 3)
        got_b = await wait_for(lambda: _ids(state, "/b", secret_b), 2)
    finally:
        await relay.stop()
    assert state.delivered_ids("/a", secret_a) == [e.event_id for e in a]
    assert state.delivered_ids("/b", secret_b) == [e.event_id for e in b]
    assert (got_a, got_b) == (3, 2)
    assert set(state.requests) == {"/a", "/b"}  # org C has no endpoint; bots are not posted
    first_three = state.requests["/a"][:3]
    assert [answer for _, _, answer in first_three] == [500, 500, 204]
    # a retry is the same delivery: same webhook-id, same bytes
    assert len({h["webhook-id"] for h, _, _ in first_three}) == 1
    assert len({body for _, body, _ in first_three}) == 1
    headers, body, _ = first_three[0]
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Clicktrack-Webhooks/1"
    sent = orjson.loads(body)
    assert sent["type"] == "clicks.v1"
    assert sent["data"]["events"][0] == orjson.loads(events.encode(a[0]))
    with pytest.raises(Exception, match="no webhook-signature matches"):
        signing.verify(secret_b, headers, body)  # one org's secret does not sign another's
    sample = relay.registry.get_sample_value
    assert sample("clicktrack_webhook_events_delivered_total") == 5
    assert sample("clicktrack_webhook_requests_total", {"result": "failed"}) == 2
    assert sample("clicktrack_webhook_records_unreadable_total") == 1
    assert sample("clicktrack_webhook_dead_lettered_total") == 0


async def test_a_delivery_that_keeps_failing_is_dead_lettered_and_the_relay_moves_on(
    relay_settings: Settings,
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    receiver: tuple[Receiver, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    state, base = receiver
    state.fail_first, state.status = {"/down": 1000}, 503
    org = await create_org(pool, "Down Inc", tracking=True)
    endpoint, secret = await register(pool, org, f"{base}/down", sealer(relay_settings))
    clicks = [make_event(org_id=org, visitor_id=f"v:{i}") for i in range(2)]
    await publish(producer, relay_settings.kafka.clicks_topic, *(events.encode(e) for e in clicks))

    caplog.set_level(logging.DEBUG)
    relay = Relay(relay_settings)
    await relay.start()
    try:
        (dead,) = await read_topic(relay_settings, relay_settings.relay.webhook_dlq_topic, 1)
        committed = await wait_for(lambda: _committed(relay), 2)
        # The endpoint just failed every retry: the next delivery gets one attempt, not three.
        late = make_event(org_id=org, visitor_id="v:late")
        await publish(producer, relay_settings.kafka.clicks_topic, events.encode(late))
        _, again = await read_topic(relay_settings, relay_settings.relay.webhook_dlq_topic, 2)
    finally:
        await relay.stop()
    attempts = state.requests["/down"]
    assert [answer for _, _, answer in attempts] == [503, 503, 503, 503]
    assert dict(again.headers)["attempts"] == b"1"
    assert [e["event_id"] for e in orjson.loads(again.value)["data"]["events"]] == [late.event_id]
    assert dead.value == attempts[0][1]  # the exact body the endpoint refused
    assert [e["event_id"] for e in orjson.loads(dead.value)["data"]["events"]] == [
        e.event_id for e in clicks
    ]
    assert dict(dead.headers) == {
        "endpoint_id": str(endpoint.id).encode(),
        "org_id": str(org).encode(),
        "webhook_id": attempts[0][0]["webhook-id"].encode(),
        "attempts": b"3",
        "reason": b"endpoint answered 503",
    }
    assert committed == 2  # dead-lettered, so the relay went past those records
    assert relay.registry.get_sample_value("clicktrack_webhook_dead_lettered_total") == 3
    assert secret not in caplog.text
    assert secret.removeprefix("whsec_") not in caplog.text


async def test_webhook_commands_register_list_and_remove(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    org = await create_org(pool, "Hooks Ltd", tracking=True)
    env = {
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "WEBHOOK_SECRET_KEY": settings.relay.webhook_secret_key.reveal(),
    }
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str, str]:
        done = runner.invoke(cli, list(args), env=env)
        return done.exit_code, done.stdout, done.stderr

    code, out, _ = await asyncio.to_thread(
        invoke, "webhook", "add", str(org), "https://hooks.example.com/in?token=t0", "--ticket",
        "SUP-7",
    )  # fmt: skip
    assert code == 0
    first, second = out.splitlines()
    endpoint_id = int(first.split()[1])
    url = "https://hooks.example.com/in?token=t0"
    assert first == f"endpoint {endpoint_id} for organisation {org}: {url}"
    secret = second.rsplit(" ", 1)[1]
    clear, sealed = await pool.fetchrow(
        "SELECT secret, sealed_secret FROM webhook_endpoints WHERE id = $1", endpoint_id
    )
    assert secret.startswith("whsec_") and clear is None  # at rest only sealed:
    assert secret.removeprefix("whsec_").encode() not in sealed
    (found,) = (await endpoints.of_orgs(pool, [org], sealer(settings)))[org]
    assert found.secret.reveal() == secret
    other_key = settings.changed(WEBHOOK_SECRET_KEY=Secret("x" * 43))
    with pytest.raises(ValueError, match="does not open"):  # the table without the key: useless
        await endpoints.of_orgs(pool, [org], sealer(other_key))

    listed = await asyncio.to_thread(invoke, "webhook", "list", str(org))
    assert listed == (0, f"endpoint {endpoint_id}: {url}\n", "")
    for private in ("https://10.0.0.1/", "https://[64:ff9b::a9fe:a9fe]/"):  # NAT64 metadata
        refused = await asyncio.to_thread(invoke, "webhook", "add", str(org), private)
        assert refused[0] == 2
        assert refused[2] == "error: the URL points at a private, loopback or link-local address\n"
    other = await asyncio.to_thread(invoke, "webhook", "remove", str(org + 1000), str(endpoint_id))
    assert other[0] == 2  # another organisation cannot remove it
    assert await asyncio.to_thread(invoke, "webhook", "remove", str(org), str(endpoint_id)) == (
        0,
        f"endpoint {endpoint_id} removed\n",
        "",
    )
    assert await endpoints.of_orgs(pool, [org], sealer(settings)) == {}
    # where an organisation's clicks go is an operator's act: in the audit trail, host only
    trail = [(e.action, e.ticket, e.detail) for e in await audit.list_entries(pool, org_id=org)]
    assert trail == [
        ("webhook.added", "SUP-7", {"endpoint": endpoint_id, "host": "hooks.example.com"}),
        ("webhook.removed", None, {"endpoint": endpoint_id}),
    ]


async def _ids(state: Receiver, path: str, secret: str) -> int:
    return len(set(state.delivered_ids(path, secret)))


async def _committed(relay: Relay) -> int:
    consumer = relay._consumer
    assert consumer is not None
    offsets = [await consumer.committed(tp) for tp in consumer.assignment()]
    return sum(o or 0 for o in offsets)


@pytest.mark.timeout(180)
async def test_a_relay_killed_mid_delivery_delivers_again_after_restart(
    relay_settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """At least once: kill -9 while a POST is in flight, restart, and the same delivery comes
    again (same events, same webhook-id), so the receiver can deduplicate."""
    arrived: list[tuple[dict[str, str], bytes]] = []
    first_arrived, release = asyncio.Event(), asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        arrived.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        first_arrived.set()
        if len(arrived) == 1:
            await release.wait()  # the relay dies while it waits for this answer
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    relay_process = None
    try:
        org = await create_org(pool, "Crashy", tracking=True)
        url = str(server.make_url("/hook"))
        _, secret = await register(pool, org, url, sealer(relay_settings))
        clicks = [make_event(org_id=org, visitor_id=f"v:{i}") for i in range(3)]
        await publish(
            producer, relay_settings.kafka.clicks_topic, *(events.encode(e) for e in clicks)
        )

        relay_process = start_relay(relay_settings)
        await asyncio.wait_for(first_arrived.wait(), 60)
        relay_process.kill()  # SIGKILL: no drain, no commit
        assert await asyncio.to_thread(relay_process.wait, 20) == -signal.SIGKILL
        release.set()

        relay = Relay(relay_settings)
        await relay.start()
        try:
            for _ in range(300):
                if len(arrived) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            await relay.stop()
    finally:
        if relay_process is not None and relay_process.poll() is None:
            relay_process.kill()
            await asyncio.to_thread(relay_process.wait, 10)
        await server.close()
    assert len(arrived) == 2
    (first_headers, _), (again_headers, _) = arrived
    ids = [e.event_id for e in clicks]
    for headers, body in arrived:
        signing.verify(secret, headers, body)
        assert [e["event_id"] for e in orjson.loads(body)["data"]["events"]] == ids
    assert first_headers["webhook-id"] == again_headers["webhook-id"]


def start_relay(settings: Settings) -> subprocess.Popen[bytes]:
    """`python -m services.relay` as its own process (so it can be killed), on `settings`."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "RELAY_GROUP": settings.relay.group,
        "RELAY_START_FROM": settings.relay.start_from,
        "RELAY_PORT": "0",
        "WEBHOOK_DLQ_TOPIC": settings.relay.webhook_dlq_topic,
        "WEBHOOK_ALLOW_INSECURE": "true",
        "WEBHOOK_BACKOFF_MS": str(settings.relay.webhook_backoff_ms),
        "WEBHOOK_MAX_ATTEMPTS": str(settings.relay.webhook_max_attempts),
        "WEBHOOK_SECRET_KEY": settings.relay.webhook_secret_key.reveal(),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_a_stalled_endpoint_delays_only_its_own_deliveries(
    relay_settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """Today's head-of-line blocking: the relay read its next batch only once every endpoint of
    the last one was done, and honoured Retry-After up to 300 s per retry, so one customer's
    stalled endpoint held every organisation's webhooks for about 25 minutes."""
    fast: list[str] = []  # event ids, in the order posted
    slow: list[bytes] = []

    async def stalled(request: web.Request) -> web.Response:
        slow.append(await request.read())
        return web.Response(status=503, headers={"Retry-After": "300"})

    async def quick(request: web.Request) -> web.Response:
        fast.extend(e["event_id"] for e in orjson.loads(await request.read())["data"]["events"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/stalled", stalled)
    app.router.add_post("/quick", quick)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        abuser, quiet = [await create_org(pool, n, tracking=True) for n in ("Stalled", "Quiet")]
        seal = sealer(relay_settings)
        for org, path in ((abuser, "/stalled"), (quiet, "/quick")):
            await register(pool, org, str(server.make_url(path)), seal)
        topic = relay_settings.kafka.clicks_topic
        first = [make_event(org_id=abuser, visitor_id="v:a"), make_event(org_id=quiet)]
        await publish(producer, topic, *(events.encode(e) for e in first))
        relay = Relay(relay_settings)
        await relay.start()
        try:
            assert await wait_for(lambda: _count(fast), 1, seconds=30) == 1
            assert len(slow) == 1  # the stalled endpoint waits out its Retry-After
            later = [make_event(org_id=quiet, visitor_id=f"v:{i}") for i in range(3)]
            await publish(producer, topic, *(events.encode(e) for e in later))
            assert await wait_for(lambda: _count(fast), 4, seconds=15) == 4
            assert len(slow) == 1
            assert fast == [first[1].event_id, *(e.event_id for e in later)]
        finally:
            await relay.stop()
    finally:
        await server.close()


async def test_an_endless_answer_is_read_no_further_than_its_cap(
    relay_settings: Settings, pool: asyncpg.Pool, producer: AIOKafkaProducer
) -> None:
    """Today the relay read a whole answer: an endpoint streaming an endless 200 held the
    delivery until its timeout, and it was retried as failed."""
    posts: list[bytes] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        posts.append(await request.read())
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                await response.write(b"x" * 65_536)
                await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_post("/endless", endless)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        org = await create_org(pool, "Chatty", tracking=True)
        await register(pool, org, str(server.make_url("/endless")), sealer(relay_settings))
        await publish(
            producer, relay_settings.kafka.clicks_topic, events.encode(make_event(org_id=org))
        )
        relay = Relay(relay_settings.changed(WEBHOOK_TIMEOUT_MS=5000))
        await relay.start()
        try:
            delivered = await wait_for(lambda: _delivered(relay), 1.0, seconds=20)
        finally:
            await relay.stop()
    finally:
        await server.close()
    assert delivered == 1.0
    assert len(posts) == 1
    assert (
        relay.registry.get_sample_value("clicktrack_webhook_requests_total", {"result": "failed"})
        == 0
    )


async def _count(items: list[str]) -> int:
    return len(items)


async def _delivered(relay: Relay) -> float:
    return relay.registry.get_sample_value("clicktrack_webhook_events_delivered_total") or 0.0
