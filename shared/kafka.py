"""Kafka helpers: start-up with bounded retries, topic creation with explicit configuration, the
log-end offsets of partitions, and the boundary where aiokafka's errors become ours (`errors`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from shared.errors import Boundary, DependencyError
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

_FAILURES = (KafkaError, OSError)


def errors(what: str, servers: str) -> Boundary:
    """A context manager that turns an aiokafka error raised in it into a `DependencyError`
    (retriable) saying Kafka at `servers` failed while doing `what` ("reading end offsets")."""
    return Boundary(
        _FAILURES,
        lambda exc: DependencyError(
            f"Kafka at {servers} failed while {what}: {exc!r}; it is tried again later"
        ),
    )


async def end_offsets(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    servers: str,
    *,
    known_to_exist: bool = False,
) -> dict[TopicPartition, int]:
    """Log-end offset (high watermark) of each of `partitions` that exists, asked through a
    started group-less `consumer`; `DependencyError` if Kafka at `servers` fails.

    Partitions of topics that do not exist (a group may still hold offsets of a deleted topic)
    are left out of the answer. A caller that has just described its topics says so
    (`known_to_exist`): the two metadata round trips that check them are then skipped, which
    matters on a request path (the API asks for every report).
    """
    if known_to_exist:
        with errors("reading end offsets", servers):
            found: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
        return found
    with errors("reading end offsets", servers):
        known = await consumer.topics()
        wanted = sorted(tp for tp in set(partitions) if tp.topic in known)
        if not wanted:
            return {}
        # One metadata request for all the topics; left to itself, aiokafka looks up the
        # leaders topic by topic, 100 ms apart (15 s for 150 topics).
        await consumer._client.set_topics(sorted({tp.topic for tp in wanted}))
        ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
    return ends


async def abandon_producer(producer: AIOKafkaProducer) -> None:
    """Close a producer without waiting for its pending batches, which fail at once.

    aiokafka's `stop()` waits until every pending batch is delivered, which never happens while
    the broker is away. A failure to close is logged: the producer is dropped either way.
    """
    producer._closed = True
    try:
        if producer._sender is not None:
            await producer._sender.close()
        producer._message_accumulator.fail_all(KafkaError("producer abandoned"))
        await producer.client.close()
    except _FAILURES as exc:
        log.warning("closing an abandoned kafka producer failed", extra={"error": repr(exc)})


async def start_with_retries(
    start: Callable[[], Awaitable[T]], what: str, servers: str, retries: int = 10
) -> T:
    """Call `start` until it succeeds, `retries` times one second apart, logging the tries left."""
    last: Exception | None = None
    for attempt in range(retries, 0, -1):
        try:
            return await start()
        except _FAILURES as exc:
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


async def dead_letter_producer(
    stack: AsyncExitStack, kafka: KafkaSettings, what: str, topics: Iterable[str]
) -> AIOKafkaProducer:
    """A started idempotent producer (`acks=all`) for a consumer's dead letters, stopped when
    `stack` closes, after checking that `topics` (the ones the process reads and writes) exist."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await start_with_retries(producer.start, what, kafka.bootstrap_servers)
    stack.push_async_callback(producer.stop)
    await require_topics(producer, topics, kafka.bootstrap_servers)
    return producer


def topic_configs(kafka: KafkaSettings, replicas: int = 1) -> dict[str, str]:
    """Topic-level configuration of the clicks and dead-letter topics.

    Records carry the broker's arrival time (`LogAppendTime`). With `replicas` > 1,
    `min.insync.replicas` is replicas - 1: an `acks=all` write survives
    one broker down, and a second failure refuses writes instead of losing them.
    """
    configs = {
        "retention.ms": str(kafka.topic_retention_hours * 3600 * 1000),
        "cleanup.policy": "delete",
        # The broker stamps each record when it takes it: the counter counts a click from a
        # redirector whose clock runs ahead at that arrival (services/counter/intake.py).
        "message.timestamp.type": "LogAppendTime",
    }
    if replicas > 1:
        configs["min.insync.replicas"] = str(replicas - 1)
    return configs


async def replication_factor(admin: AIOKafkaAdminClient, kafka: KafkaSettings) -> int:
    """`kafka.topic_replication_factor`, or min(3, brokers in the cluster) when it is 0."""
    if kafka.topic_replication_factor:
        return kafka.topic_replication_factor
    cluster = await admin.describe_cluster()
    return max(1, min(3, len(cluster["brokers"])))


async def ensure_topics(
    kafka: KafkaSettings, topics: list[str] | None = None, *, partitions: int | None = None
) -> list[str]:
    """Create the clicks and dead-letter topics (or `topics`) if missing; returns those created."""
    names = topics or [kafka.clicks_topic, kafka.dlq_topic]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await start_with_retries(admin.start, "kafka admin client", kafka.bootstrap_servers)
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        replicas = await replication_factor(admin, kafka)
        wanted = [
            NewTopic(
                name=name,
                num_partitions=partitions or kafka.topic_partitions,
                replication_factor=replicas,
                topic_configs=topic_configs(kafka, replicas),
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
        raise DependencyError(f"Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    finally:
        await admin.close()
    return created


async def delete_topics(kafka: KafkaSettings, topics: list[str] | None = None) -> None:
    """Delete the clicks and dead-letter topics (or `topics`): what benchmarks and tools that made
    topics of their own use to leave nothing behind."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await start_with_retries(admin.start, "kafka admin client", kafka.bootstrap_servers)
    try:
        await admin.delete_topics(topics or [kafka.clicks_topic, kafka.dlq_topic])
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
