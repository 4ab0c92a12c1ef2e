"""Consumer lag on the real broker: exact lag, lag seconds, statuses, the exporter, topics."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from click.testing import CliRunner, Result

from services.cli.main import cli
from services.ops.exporter import create_app
from services.ops.lag import GroupLag, LagMonitor, read_lag
from services.ops.lag_reader import LagReader
from services.ops.lag_status import Status
from services.ops.topics import check_topics
from shared import events
from shared.kafka import ensure_topics, topic_configs
from shared.settings import Settings
from tests.helpers import Forwarder
from tests.unit.test_events import make_event

pytestmark = pytest.mark.integration

AGE_S = 90  # the oldest unconsumed record is stamped this many seconds in the past


async def stamped_by_producers(settings: Settings) -> None:
    """Make the test's clicks topic keep the producer's timestamps (our topics take the broker's,
    `LogAppendTime`), so that a record can be stamped in the past: the lag reader works on any
    topic, and this one has records of a known age."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        configs = {**topic_configs(settings.kafka), "message.timestamp.type": "CreateTime"}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.kafka.clicks_topic, configs)]
        )
        # The leader applies a topic's new config a moment later: wait until it reports it.
        topic = ConfigResource(ConfigResourceType.TOPIC, settings.kafka.clicks_topic)
        for _ in range(50):
            (described,) = await admin.describe_configs([topic])
            entries = {e[0]: e[1] for e in described.resources[0][4]}
            if entries.get("message.timestamp.type") == "CreateTime":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
    finally:
        await admin.close()


async def consume_part(settings: Settings, producer: AIOKafkaProducer, group: str) -> None:
    """10 records on partition 0 and 4 on partition 1; `group` commits 6 and 4."""
    await stamped_by_producers(settings)
    now_ms = int(time.time() * 1000)
    for i in range(10):
        stamp = now_ms - AGE_S * 1000 if i == 6 else now_ms - 1000
        await producer.send_and_wait(
            settings.kafka.clicks_topic, b"x", key=b"k", partition=0, timestamp_ms=stamp
        )
    for _ in range(4):
        await producer.send_and_wait(settings.kafka.clicks_topic, b"y", key=b"k", partition=1)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        p0, p1 = (
            TopicPartition(settings.kafka.clicks_topic, 0),
            TopicPartition(settings.kafka.clicks_topic, 1),
        )
        consumer.assign([p0, p1])
        await consumer.commit({p0: 6, p1: 4})
    finally:
        await consumer.stop()


async def test_a_group_that_consumed_part_of_a_topic_shows_its_exact_lag(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    group = settings.counter.group
    await consume_part(settings, producer, group)
    (result,) = await read_lag(settings.kafka.bootstrap_servers, [group])
    assert (result.group, result.state, result.members) == (group, "Empty", 0)
    rows = [(p.topic, p.partition, p.committed, p.end, p.lag) for p in result.partitions]
    topic = settings.kafka.clicks_topic
    assert rows == [(topic, 0, 6, 10, 4), (topic, 1, 4, 4, 0)]
    first, second = result.partitions
    assert first.lag_seconds is not None and AGE_S <= first.lag_seconds < AGE_S + 60
    assert second.lag_seconds == 0.0
    # lag, nobody in the group, nothing moving: commits stopped
    assert (first.status, second.status, result.status) == (Status.STOP, Status.OK, Status.STOP)
    assert (result.max_lag, result.sum_lag) == (4, 4)


async def test_rewind_then_falling_behind_on_the_real_broker(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    group = settings.counter.group
    await consume_part(settings, producer, group)  # partition 0: committed 6, end 10
    p0 = TopicPartition(settings.kafka.clicks_topic, 0)
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([p0])
        async with LagReader(settings.kafka.bootstrap_servers) as reader:
            monitor = LagMonitor(reader, window=2, groups=[group])
            await monitor.poll()
            await committer.commit({p0: 3})  # someone resets the group's offset backwards
            (rewound,) = await monitor.poll()
            assert [(p.committed, p.lag, p.status) for p in rewound.partitions] == [
                (3, 7, Status.REWIND),
                (4, 0, Status.OK),
            ]
            for _ in range(5):
                await producer.send_and_wait(settings.kafka.clicks_topic, b"z", partition=0)
            await committer.commit({p0: 5})  # it moves on, but slower than the writes
            (behind,) = await monitor.poll()
            assert (behind.partitions[0].committed, behind.partitions[0].lag) == (5, 10)
            assert behind.status is Status.WARN
    finally:
        await committer.stop()


async def test_lag_made_only_of_a_transaction_marker_has_no_age(
    settings: Settings, topics: list[str]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, transactional_id=settings.counter.group
    )
    await producer.start()
    try:
        async with producer.transaction():
            for _ in range(2):
                await producer.send_and_wait(settings.kafka.clicks_topic, b"t", partition=0)
    finally:
        await producer.stop()
    p0 = TopicPartition(settings.kafka.clicks_topic, 0)
    committer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        group_id=settings.counter.group,
        enable_auto_commit=False,
    )
    await committer.start()
    try:
        committer.assign([p0])
        await committer.commit({p0: 2})  # both records read; only the commit marker is left
    finally:
        await committer.stop()
    async with LagReader(settings.kafka.bootstrap_servers) as reader:
        monitor = LagMonitor(reader, window=2, groups=[settings.counter.group])
        for _ in range(2):  # the second poll does not look for the missing record again
            (group,) = await monitor.poll()
            (part,) = group.partitions
            assert (part.committed, part.end, part.lag, part.lag_seconds) == (2, 3, 1, None)
        assert reader._no_record == {(settings.kafka.clicks_topic, 0, 2, 3)}


async def test_the_exporter_serves_kafka_lag_exporter_metrics(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    group = settings.counter.group
    await consume_part(settings, producer, group)
    watched = settings.changed(LAG_GROUPS=(group,), LAG_POLL_MS=100, LAG_WINDOW_SAMPLES=2)
    server = TestServer(create_app(watched), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            base = str(server.make_url("")).rstrip("/")
            assert await _readyz_once_ready(http, base, seconds=10) == 200
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            async with http.get(f"{base}/lag") as resp:
                body = await resp.json()
    finally:
        await server.close()
    topic = settings.kafka.clicks_topic
    lines = set(text.splitlines())
    p0 = f'cluster_name="clicktrack",group="{group}",partition="0",topic="{topic}"'
    p1 = f'cluster_name="clicktrack",group="{group}",partition="1",topic="{topic}"'
    g = f'cluster_name="clicktrack",group="{group}"'
    for line in [
        f"kafka_consumergroup_group_lag{{{p0}}} 4.0",
        f"kafka_consumergroup_group_lag{{{p1}}} 0.0",
        f"kafka_consumergroup_group_offset{{{p0}}} 6.0",
        f"kafka_consumergroup_group_lag_seconds{{{p1}}} 0.0",
        f"kafka_consumergroup_group_max_lag{{{g}}} 4.0",
        f"kafka_consumergroup_group_sum_lag{{{g}}} 4.0",
        f'kafka_consumergroup_group_topic_sum_lag{{{g},topic="{topic}"}} 4.0',
        f'kafka_partition_latest_offset{{cluster_name="clicktrack",partition="0",topic="{topic}"}}'
        " 10.0",
        f'clicktrack_consumergroup_status{{{g},status="STOP"}} 1.0',
        f'clicktrack_consumergroup_status{{{g},status="OK"}} 0.0',
        f"clicktrack_consumergroup_members{{{g}}} 0.0",
    ]:
        assert line in lines, line
    (lag_s,) = [x for x in lines if x.startswith(f"kafka_consumergroup_group_lag_seconds{{{p0}}}")]
    assert AGE_S <= float(lag_s.rsplit(" ", 1)[1]) < AGE_S + 60
    assert [(b["group"], b["status"], b["sum_lag"]) for b in body] == [(group, "STOP", 4)]


async def test_the_exporter_starts_without_kafka_and_is_ready_once_kafka_answers(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    """Kafka down at start: the exporter serves /healthz, says /readyz 503 and counts failed
    polls; once Kafka answers on its address (a forwarder to the real broker, opened late), it
    polls and is ready, without a restart."""
    group = settings.counter.group
    await consume_part(settings, producer, group)
    with socket.socket() as probe:  # a free port: nothing answers there yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    watched = settings.changed(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
        LAG_GROUPS=(group,),
        LAG_POLL_MS=100,
        LAG_WINDOW_SAMPLES=2,
    )
    server = TestServer(create_app(watched), host="127.0.0.1")
    await server.start_server()
    kafka = Forwarder(settings.kafka.bootstrap_servers.split(",")[0], port)
    try:
        async with aiohttp.ClientSession() as http:
            base = str(server.make_url("")).rstrip("/")
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
            errors = await _wait_for_metric(http, base, "clicktrack_lag_poll_errors_total", 1.0)
            assert errors >= 1.0
            await kafka.start()  # Kafka's address answers from now on
            assert await _readyz_once_ready(http, base, seconds=30) == 200
            async with http.get(f"{base}/lag") as resp:
                body = await resp.json()
    finally:
        await server.close()
        await kafka.close()
    assert [(b["group"], b["sum_lag"]) for b in body] == [(group, 4)]


async def _readyz_once_ready(http: aiohttp.ClientSession, base: str, seconds: float) -> int:
    """The status of /readyz once it is 200, or the last one after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        async with http.get(f"{base}/readyz") as resp:
            if resp.status == 200 or time.monotonic() > deadline:
                return resp.status
        await asyncio.sleep(0.1)


async def _wait_for_metric(
    http: aiohttp.ClientSession, base: str, name: str, least: float, seconds: float = 30.0
) -> float:
    """The value of the unlabelled metric `name` once it is at least `least` (or the last one)."""
    deadline = time.monotonic() + seconds
    value = 0.0
    while time.monotonic() < deadline:
        async with http.get(f"{base}/metrics") as resp:
            for line in (await resp.text()).splitlines():
                if line.startswith(name + " "):
                    value = float(line.rsplit(" ", 1)[1])
        if value >= least:
            break
        await asyncio.sleep(0.1)
    return value


async def test_lag_command_exit_status_and_json(
    settings: Settings, producer: AIOKafkaProducer
) -> None:
    group = settings.counter.group
    await consume_part(settings, producer, group)
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers}
    runner = CliRunner()

    def invoke(*args: str) -> Result:  # the command runs its own event loop: not on ours
        return runner.invoke(cli, list(args), env=env)

    done = await asyncio.to_thread(invoke, "lag", "--group", group, "--json", "--samples", "1")
    assert done.exit_code == 1, done.output
    (body,) = orjson.loads(done.stdout)
    assert (body["group"], body["status"], body["sum_lag"], body["max_lag"]) == (
        group,
        "STOP",
        4,
        4,
    )
    assert [(p["partition"], p["committed"], p["end"], p["lag"]) for p in body["partitions"]] == [
        (0, 6, 10, 4),
        (1, 4, 4, 0),
    ]
    table = await asyncio.to_thread(invoke, "lag", "--group", group, "--samples", "1")
    assert table.exit_code == 1
    assert table.stdout.splitlines()[0].startswith(f"group {group}: STOP (state Empty, 0 members")
    missing = await asyncio.to_thread(invoke, "lag", "--group", "no-such-group-7", "--samples", "1")
    assert missing.exit_code == 2
    assert "no committed offsets for group(s) no-such-group-7" in missing.stderr


@pytest.mark.timeout(300)
async def test_lag_follows_a_real_counter_paused_stopped_and_caught_up(
    settings: Settings,
    pool: asyncpg.Pool,
    redis: aioredis.Redis,
    producer: AIOKafkaProducer,
) -> None:
    async def send(n: int) -> None:
        for i in range(n):
            event = make_event(link_id=5, visitor_id=f"v:{i}")
            await producer.send_and_wait(
                settings.kafka.clicks_topic, events.encode(event), key=b"k"
            )

    group = settings.counter.group
    async with LagReader(settings.kafka.bootstrap_servers) as reader:
        monitor = LagMonitor(reader, window=3, groups=[group])

        async def until(
            wanted: Status | None, seconds: float, *, lag: int | None = None, members: int = -1
        ) -> GroupLag:
            """Poll until the group has status `wanted` (and total lag `lag`, and `members` live
            members in a Stable group), or time is up; returns the last poll."""
            deadline = time.monotonic() + seconds
            while True:
                polled = await monitor.poll()
                hit = polled and wanted in (None, polled[0].status)
                hit = hit and lag in (None, polled[0].sum_lag)
                hit = hit and (
                    members < 0 or (polled[0].state, polled[0].members) == ("Stable", members)
                )
                if hit or time.monotonic() > deadline:
                    assert polled, "the group has no committed offsets"
                    return polled[0]
                await asyncio.sleep(0.2)

        await send(12)
        counter = start_counter(settings)
        try:
            caught_up = await until(Status.OK, 60, lag=0)
            assert (caught_up.status, caught_up.sum_lag, caught_up.members) == (Status.OK, 0, 1)

            counter.send_signal(signal.SIGSTOP)  # paused: still a member until its session ends
            await send(6)
            stalled = await until(Status.STALL, 8)
            assert (stalled.status, stalled.sum_lag, stalled.members) == (Status.STALL, 6, 1)
            stopped = await until(Status.STOP, 40)  # the coordinator drops the silent member
            assert (stopped.status, stopped.sum_lag, stopped.members) == (Status.STOP, 6, 0)

            counter.send_signal(signal.SIGCONT)
            # Evicted while paused, the counter may count the 6 before it has rejoined: then it
            # stores them in Postgres, but its Kafka commit fails and Kafka's offset stays behind
            # until its next batch. So once it is back in the group, one more click.
            rejoined = await until(None, 60, members=1)
            assert (rejoined.state, rejoined.members) == ("Stable", 1)
            await send(1)
            back = await until(Status.OK, 60, lag=0)
            assert (back.status, back.sum_lag) == (Status.OK, 0)

            counter.send_signal(signal.SIGTERM)  # stopped for good: leaves the group at once
            assert await asyncio.to_thread(counter.wait, 40) == 0
            await send(3)
            gone = await until(Status.STOP, 20)
            assert (gone.status, gone.sum_lag, gone.members) == (Status.STOP, 3, 0)
        finally:
            if counter.poll() is None:
                counter.send_signal(signal.SIGCONT)
                counter.kill()
                await asyncio.to_thread(counter.wait, 10)


def start_counter(settings: Settings) -> subprocess.Popen[bytes]:
    """The counter as its own process (so it can be paused), on this test's names."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "REDIS_URL": settings.redis.url.reveal(),
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "DLQ_TOPIC": settings.kafka.dlq_topic,
        "COUNTER_GROUP": settings.counter.group,
        "COUNTER_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.counter"], env=env, stdout=subprocess.DEVNULL
    )


async def test_topics_are_created_then_checked(settings: Settings) -> None:
    names = [settings.kafka.clicks_topic, settings.kafka.dlq_topic]
    await ensure_topics(settings.kafka, names)
    reports = await check_topics(settings, [*names, f"{settings.kafka.clicks_topic}.missing"])
    assert [(r.name, r.ok, r.partitions, r.replicas, r.problems) for r in reports] == [
        (settings.kafka.clicks_topic, True, 3, 1, ()),
        (settings.kafka.dlq_topic, True, 3, 1, ()),
        (f"{settings.kafka.clicks_topic}.missing", False, 0, 0, ("topic does not exist",)),
    ]
    assert reports[0].configs == {
        "retention.ms": "604800000",
        "cleanup.policy": "delete",
        "message.timestamp.type": "LogAppendTime",
    }


async def test_a_topic_made_otherwise_is_reported(settings: Settings) -> None:
    odd = settings.changed(TOPIC_PARTITIONS=2, TOPIC_RETENTION_HOURS=1)
    await ensure_topics(odd.kafka, [settings.kafka.clicks_topic])
    (report,) = await check_topics(settings, [settings.kafka.clicks_topic])
    assert not report.ok
    assert report.problems == (
        "has 2 partitions, expected 3",
        "retention.ms is '3600000', expected '604800000'",
    )
    # three replicas cannot exist on a one-broker cluster: asked for, it is a problem
    (strict,) = await check_topics(
        settings.changed(TOPIC_REPLICATION_FACTOR=3, TOPIC_PARTITIONS=2),
        [settings.kafka.clicks_topic],
    )
    assert strict.problems == (
        "has 1 replicas per partition, expected 3",
        "retention.ms is '3600000', expected '604800000'",
        "min.insync.replicas is '1', expected '2'",
    )


def test_topics_command_checks_without_creating(settings: Settings) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "DLQ_TOPIC": settings.kafka.dlq_topic,
        "WEBHOOK_DLQ_TOPIC": f"{settings.kafka.clicks_topic}.webhooks",
        "TOPIC_PARTITIONS": "3",
    }
    runner = CliRunner()
    checked = runner.invoke(cli, ["topics", "--check"], env=env)
    assert checked.exit_code == 1
    assert checked.stdout.splitlines() == [
        f"{settings.kafka.clicks_topic}: MISSING",
        f"{settings.kafka.dlq_topic}: MISSING",
        f"{settings.kafka.clicks_topic}.webhooks: MISSING",
    ]
    made = runner.invoke(cli, ["topics"], env=env)
    assert made.exit_code == 0, made.output
    assert made.stdout.splitlines()[0] == (
        f"{settings.kafka.clicks_topic}: created (3 partitions, 1 replicas,"
        " cleanup.policy=delete, message.timestamp.type=LogAppendTime, retention.ms=604800000)"
    )
    again = runner.invoke(cli, ["topics", "--check"], env=env)
    assert again.exit_code == 0
    assert again.stdout.splitlines()[2].startswith(
        f"{settings.kafka.clicks_topic}.webhooks: ok (3 "
    )


async def test_topics_command_gives_an_old_topic_the_brokers_timestamps(
    settings: Settings, topics: list[str]
) -> None:
    """A clicks topic made before LogAppendTime (the counter's clock rule needs the broker's
    stamps) is aligned by `clicktrack topics`, not reported as a mismatch for ever."""
    await stamped_by_producers(settings)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "DLQ_TOPIC": settings.kafka.dlq_topic,
        "WEBHOOK_DLQ_TOPIC": f"{settings.kafka.clicks_topic}.webhooks-dlq",
        "TOPIC_PARTITIONS": "3",
    }
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args), env=env)

    checked = await asyncio.to_thread(invoke, "topics", "--check")
    assert checked.exit_code == 1
    assert "message.timestamp.type is 'CreateTime', expected 'LogAppendTime'" in checked.stdout
    made = await asyncio.to_thread(invoke, "topics")
    assert made.exit_code == 0, made.output
    assert (await asyncio.to_thread(invoke, "topics", "--check")).exit_code == 0
