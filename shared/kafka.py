"""Kafka helpers: start-up with bounded retries, and topic creation with explicit configuration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from shared.errors import DependencyError
from shared.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


async def start_with_retries(
    start: Callable[[], Awaitable[T]], what: str, servers: str, retries: int = 10
) -> T:
    """Call `start` until it succeeds, `retries` times one second apart, logging the tries left."""
    last: Exception | None = None
    for attempt in range(retries, 0, -1):
        try:
            return await start()
        except (KafkaError, OSError) as exc:
            last = exc
            log.warning(
                "kafka not reachable",
                extra={"what": what, "servers": servers, "retries_left": attempt - 1},
            )
            if attempt > 1:
                await asyncio.sleep(1)
    raise DependencyError(
        f"cannot start {what}: Kafka at {servers} did not answer ({last}); is the stack up?"
    ) from last


async def require_topics(producer: AIOKafkaProducer, topics: Iterable[str], servers: str) -> None:
    """Fail with a clear error when a topic the process reads or writes does not exist (asked of
    Kafka through a started `producer`): a consumer subscribed to a missing topic waits in its
    `start()` for ever, logging "not found in cluster metadata", and its process never serves."""
    metadata = await producer.client.fetch_all_metadata()
    missing = sorted(set(topics) - metadata.topics())
    if missing:
        raise DependencyError(
            f"Kafka at {servers} has no topic {', '.join(missing)}: "
            "create the topics with `clicktrack topics`"
        )


def topic_configs(settings: Settings, replicas: int = 1) -> dict[str, str]:
    """Topic-level configuration of the clicks and dead-letter topics.

    With `replicas` > 1, `min.insync.replicas` is replicas - 1: an `acks=all` write survives
    one broker down, and a second failure refuses writes instead of losing them.
    """
    configs = {
        "retention.ms": str(settings.topic_retention_hours * 3600 * 1000),
        "cleanup.policy": "delete",
    }
    if replicas > 1:
        configs["min.insync.replicas"] = str(replicas - 1)
    return configs


async def replication_factor(admin: AIOKafkaAdminClient, settings: Settings) -> int:
    """`settings.topic_replication_factor`, or min(3, brokers in the cluster) when it is 0."""
    if settings.topic_replication_factor:
        return settings.topic_replication_factor
    cluster = await admin.describe_cluster()
    return max(1, min(3, len(cluster["brokers"])))


async def ensure_topics(
    settings: Settings, topics: list[str] | None = None, *, partitions: int | None = None
) -> list[str]:
    """Create the clicks and dead-letter topics (or `topics`) if missing; returns those created."""
    names = topics or [settings.clicks_topic, settings.dlq_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await start_with_retries(admin.start, "kafka admin client", settings.kafka_bootstrap_servers)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        replicas = await replication_factor(admin, settings)
        wanted = [
            NewTopic(
                name=name,
                num_partitions=partitions or settings.topic_partitions,
                replication_factor=replicas,
                topic_configs=topic_configs(settings, replicas),
            )
            for name in names
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process made it between our list and create
            created = [t.name for t in wanted]
        await _wait_for_metadata(admin, names)
    except KafkaConnectionError as exc:
        raise DependencyError(f"Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    return created


async def delete_topics(settings: Settings, topics: list[str] | None = None) -> None:
    """Delete the clicks and dead-letter topics (or `topics`): what benchmarks and tools that made
    topics of their own use to leave nothing behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await start_with_retries(admin.start, "kafka admin client", settings.kafka_bootstrap_servers)
    try:
        await admin.delete_topics(topics or [settings.clicks_topic, settings.dlq_topic])
    finally:
        await admin.close()


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    # A new topic's leaders are elected a moment after CreateTopics returns.
    for _ in range(50):
        described = await admin.describe_topics(names)
        ready = all(
            t.get("error_code", 0) == 0
            and t.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        await asyncio.sleep(0.1)
    raise DependencyError(f"topics {names} have no leaders after 5 s")
