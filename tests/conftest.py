"""Fixtures: the real Kafka, Redis and Postgres, and a fresh namespace in each for every test.

Service addresses come from KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and POSTGRES_DSN (`make test` sets
them to the native stack). When they are unset and a Docker engine answers, testcontainers starts
the three services for the session; when neither, the tests that need them fail saying how to
start the stack. Each test gets its own Postgres schema, topics, consumer group, and a flushed
Redis database (TEST_REDIS_DB, default 15), so tests cannot see each other's data. The topics
tests made are deleted when the session ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from shared import db
from shared.kafka import ensure_topics
from shared.settings import Settings

SERVICE_VARS = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "POSTGRES_DSN")
# Redis has no schemas: tests use one database, flushed per test. Two suites running at once
# against the same Redis (e.g. from two worktrees) must set different TEST_REDIS_DB values, and
# all but one TEST_KEEP_TOPICS=1 (the session's end deletes every test topic it finds).
TEST_REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "15"))
HOW_TO_START = (
    "the integration tests need Kafka, Redis and Postgres. Run `make test` (it starts the native"
    " stack), or start it with `make stack-up` and export KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and"
    " POSTGRES_DSN, or install a Docker engine so testcontainers can start them."
)
TEST_TOPIC = re.compile(r"^clicks\.(dlq\.)?(test|fuzz|logs)\.[0-9a-f]{6,32}(\.webhooks-dlq)?$")
"""The names of the topics tests make for themselves (a test's tag in each)."""
_brokers_used: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def _delete_test_topics() -> Iterator[None]:
    """When the session ends, delete the topics the tests made (left over from earlier sessions
    too): a broker that keeps thousands of them takes minutes to stop and start again."""
    yield
    if os.environ.get("TEST_KEEP_TOPICS"):
        return  # another suite runs against the same broker (e.g. from a second worktree)
    for servers in _brokers_used:
        asyncio.run(_delete_topics_of_tests(servers))


async def _delete_topics_of_tests(servers: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    try:
        await admin.start()
    except (KafkaError, OSError):
        return  # the broker is gone already: nothing to clean
    try:
        names = sorted(t for t in await admin.list_topics() if TEST_TOPIC.match(t))
        for start in range(0, len(names), 200):
            await admin.delete_topics(names[start : start + 200])
    finally:
        await admin.close()


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    return done.returncode == 0


def _on_test_db(addresses: dict[str, str]) -> dict[str, str]:
    """The addresses with Redis's database replaced by the tests' own (TEST_REDIS_DB): a process a
    test starts from them never writes into the database of the services `make up` started."""
    redis_url = addresses["REDIS_URL"].rsplit("/", 1)[0] + f"/{TEST_REDIS_DB}"
    return {**addresses, "REDIS_URL": redis_url}


@pytest.fixture(scope="session")
def service_addresses() -> Iterator[dict[str, str]]:
    """KAFKA_BOOTSTRAP_SERVERS, REDIS_URL (its TEST_REDIS_DB) and POSTGRES_DSN of the services."""
    if all(os.environ.get(v) for v in SERVICE_VARS):
        yield _on_test_db({v: os.environ[v] for v in SERVICE_VARS})
        return
    if not _docker_available():
        pytest.fail(HOW_TO_START, pytrace=False)
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    with (
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        RedisContainer("redis:7-alpine") as redis,
        PostgresContainer("postgres:15-alpine", driver=None) as postgres,
    ):
        yield _on_test_db(
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
                "REDIS_URL": f"redis://{redis.get_container_host_ip()}:"
                f"{redis.get_exposed_port(6379)}/0",
                "POSTGRES_DSN": postgres.get_connection_url(),
            }
        )


def own_settings(
    service_addresses: dict[str, str], folder: Path, tag: str | None = None
) -> Settings:
    """Settings pointing at the real services with everything a test could share of its own.

    A Postgres schema, topics, consumer groups, the test Redis database, ports chosen by the
    kernel and a spool folder under `folder`: nothing here is what the services `make up`
    started use, so tests pass whether or not that stack is running.
    """
    tag = tag or uuid.uuid4().hex[:10]
    base = Settings.from_env(service_addresses)
    _brokers_used.add(base.kafka.bootstrap_servers)
    return base.changed(
        POSTGRES_SCHEMA=f"t_{tag}",
        CLICKS_TOPIC=f"clicks.test.{tag}",
        DLQ_TOPIC=f"clicks.dlq.test.{tag}",
        WEBHOOK_DLQ_TOPIC=f"clicks.test.{tag}.webhooks-dlq",
        COUNTER_GROUP=f"counter-test-{tag}",
        RELAY_GROUP=f"relay-test-{tag}",
        TOPIC_PARTITIONS=3,
        REDIRECTOR_PORT=0,
        REDIRECTOR_METRICS_PORT=0,
        COUNTER_PORT=0,
        API_PORT=0,
        API_METRICS_PORT=0,
        LAG_PORT=0,
        RELAY_PORT=0,
        SPOOL_DIR=str(folder / "spool"),
    )


@pytest.fixture
def settings(service_addresses: dict[str, str], tmp_path: Path) -> Settings:
    """Settings pointing at the real services, with names, ports and a spool of this test's own."""
    return own_settings(service_addresses, tmp_path)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on this test's freshly migrated schema; the schema is dropped afterwards.

    The test Redis database is flushed first: a fresh schema numbers its links from 1 again,
    and a link key cached by an earlier test (`ct:link1:1`) must not describe this one's."""
    client = aioredis.Redis.from_url(settings.redis.url.reveal())
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    async with db.pool(settings.postgres, max_size=4) as created:
        async with created.acquire() as conn:
            await db.migrate(conn, settings.postgres.schema)
        yield created
        await created.execute(f'DROP SCHEMA "{settings.postgres.schema}" CASCADE')


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis database, flushed before the test."""
    client = aioredis.Redis.from_url(settings.redis.url.reveal())
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def topics(settings: Settings) -> list[str]:
    """This test's clicks and dead-letter topics, created with their configuration."""
    return await ensure_topics(settings.kafka)


@pytest.fixture
async def producer(settings: Settings, topics: list[str]) -> AsyncIterator[AIOKafkaProducer]:
    """A producer (acks=all) for this test's topics, which exist; stopped afterwards."""
    created = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await created.start()
    yield created
    await created.stop()


@pytest.fixture
async def redirector_url(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> AsyncIterator[str]:
    """Base URL of a redirector on a free port of 127.0.0.1."""
    from services.redirector.app import Redirector

    running = Redirector(settings)
    await running.start("127.0.0.1", 0)
    yield running.url
    await running.stop()
