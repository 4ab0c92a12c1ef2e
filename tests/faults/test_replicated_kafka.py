"""A three-broker cluster on this machine: kill -9 the partition leader under load, lose no click.

The topic has replication factor 3 and min.insync.replicas 2, the redirector's producer acks=all
with idempotence: every click answered 302 must be on the topic after the leader dies.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.cli.loadgen import Plan, click_number, run
from services.redirector.app import Redirector
from shared.links import create_link, create_org
from shared.settings import Settings
from tests.helpers import read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "kafka-cluster.sh"
CLICKS = 800
RATE = 100.0


def cluster(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {**os.environ, "CLUSTER_DIR": str(tmp_path_factory.mktemp("kafka-cluster"))}
    try:
        cluster("up", env=env)
        yield env
    finally:
        cluster("down", env=env)


@pytest.fixture
async def cluster_settings(
    settings: Settings, cluster_env: dict[str, str]
) -> AsyncIterator[Settings]:
    bootstrap = cluster("bootstrap", env=cluster_env).strip()
    ours = settings.changed(KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    ours.kafka.clicks_topic,
                    num_partitions=3,
                    replication_factor=3,
                    topic_configs={"min.insync.replicas": "2"},
                )
            ]
        )
    finally:
        await admin.close()
    yield ours


async def leader_of(settings: Settings, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        (topic,) = await admin.describe_topics([settings.kafka.clicks_topic])
    finally:
        await admin.close()
    leaders = {p["partition"]: p["leader"] for p in topic["partitions"]}
    return int(leaders[partition])


async def test_killing_the_leader_under_load_loses_no_click(
    cluster_settings: Settings, cluster_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    org_id = await create_org(pool, "Replicated", tracking=True)
    link = await create_link(
        pool,
        org_id=org_id,
        destination="https://example.com/r",
        code_length=cluster_settings.links.code_length,
    )
    code = link.codes[None]

    server = Redirector(cluster_settings)
    await server.start("127.0.0.1", 0)
    try:
        plan = Plan(
            base_url=server.url,
            codes=[code],
            clicks=CLICKS,
            visitors=50,
            rate=RATE,
            max_seconds=60,
            visitor_key=cluster_settings.redirector.visitor_hash_key.reveal().encode(),
        )
        load = asyncio.create_task(run(plan))
        await asyncio.sleep(2.0)  # under load: a fifth of the clicks are in
        # Every event of this test has the same key, so they all go to one partition.
        records = await read_topic(cluster_settings, cluster_settings.kafka.clicks_topic, 1)
        victim = await leader_of(cluster_settings, records[0].partition)
        cluster("kill-node", str(victim), env=cluster_env)
        outcome = await load
        # Clicks sent while the producer moved to the new leader may have been spooled to disk:
        # wait until the sink is healthy again (the spool replayed) before stopping.
        url = f"{server.url}/readyz"
        healthy_in_a_row = 0
        async with aiohttp.ClientSession() as http:
            for _ in range(120):
                async with http.get(url) as resp:
                    healthy_in_a_row = healthy_in_a_row + 1 if resp.status == 200 else 0
                if healthy_in_a_row == 3:
                    break
                await asyncio.sleep(0.5)
        assert healthy_in_a_row == 3, "the redirector's sink did not recover within 60 s"
    finally:
        await server.stop()  # drains the publish queue and flushes the producer

    assert len(outcome.answered) == CLICKS, outcome.failed
    # A batch sent again after the failover is on the topic twice (the counter counts it once):
    # read past CLICKS records, or the resent ones would hide the last clicks.
    on_topic = await read_topic(
        cluster_settings, cluster_settings.kafka.clicks_topic, CLICKS * 2, seconds=10
    )
    numbers = {click_number(orjson.loads(r.value)["user_agent"]) for r in on_topic}
    missing = sorted(set(outcome.answered) - numbers)
    assert missing == [], f"{len(missing)} clicks answered 302 but not on the topic: {missing[:50]}"
    assert await leader_of(cluster_settings, on_topic[0].partition) != victim
    cluster("start-node", str(victim), env=cluster_env)
