"""The counter under faults, as separate processes on the real Kafka, Redis and Postgres.

Each test publishes a numbered workload (duplicates and bots included), runs `python -m
services.counter` subprocesses against it, breaks something mid-run, and then checks that
Postgres and Redis hold exactly the counts of the distinct clicks (`harness.validate` names any
missing or extra click). FAULT_EVENTS (default 100,000) and FAULT_KILLS (default 10) size the
kill -9 test; `bench/counter --soak` runs a bigger profile.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests.faults.harness import Rig, kafka_committed, read_all

pytestmark = pytest.mark.integration

EVENTS = int(os.environ.get("FAULT_EVENTS", "100000"))
KILLS = int(os.environ.get("FAULT_KILLS", "10"))
POISON = 40


@pytest.mark.timeout(600)
async def test_kill_9_at_random_moments_leaves_exact_counts(
    rig: Rig, fault_rng: random.Random
) -> None:
    workload = await rig.publish(EVENTS, seed=5, poison=POISON)
    total = len(workload.records)
    # A static member id, as a deployment with stable process names has: the restarted process
    # takes its partitions back at once instead of after the session timeout.
    counter = rig.counter("counter", COUNTER_INSTANCE_ID="kill9")
    mid_run = 0
    for _ in range(KILLS):
        before = await rig.progress()
        counter.start()
        if before < total:
            await rig.wait_for_progress(before)
        # within about one batch's time: a kill can land at any step of a batch, and the
        # workload outlasts the kills (a batch of 10,000 records takes about 0.2 s)
        await asyncio.sleep(fault_rng.uniform(0.0, 0.1))
        mid_run += await rig.progress() < total
        counter.kill()
    counter.start()
    problems = await rig.counted_exactly(workload)
    print(
        f"kill -9 test: {len(workload.clicks)} clicks, {workload.duplicates} duplicates,"
        f" {KILLS} kills ({mid_run} while counting), problems: {len(problems)}"
    )
    assert problems == []
    assert mid_run >= KILLS - 3  # nearly every kill landed while it was counting
    assert counter.terminate() == 0
    # every poison record reached the DLQ (at least once: a kill between the send and the
    # commit sends it again) and nothing else did
    dead = await read_all(rig.settings, rig.settings.kafka.dlq_topic)
    poison = {v for k, v in workload.records if k == b"poison"}
    assert len(poison) == POISON
    assert set(dead) == poison
    print(f"kill -9 test: {POISON} poison records, {len(dead)} dead letters")


@pytest.mark.timeout(300)
async def test_two_counters_one_killed_and_restarted_stay_exact(
    rig: Rig, fault_rng: random.Random
) -> None:
    workload = await rig.publish(100_000, seed=7)
    # batches of 1,000, and enough clicks that both are still counting when a is killed
    a = rig.counter("a", COUNTER_BATCH_MAX_RECORDS="1000")
    b = rig.counter("b", COUNTER_BATCH_MAX_RECORDS="1000")
    # b first: it is in the group before a joins, so it counts whatever a rebalance leaves it
    # (started together, a fast a could finish everything before b joined).
    b.start()
    await b.wait_ready()
    a.start()
    await a.wait_ready()
    joined = await rig.progress()
    print(f"two counters: a joined at {joined} of {len(workload.records)} records")
    await rig.wait_for_progress(joined + 2_000)
    a.kill()  # its partitions move to b after the session timeout: a rebalance
    assert await rig.progress() < len(workload.records)
    await asyncio.sleep(fault_rng.uniform(0.0, 1.0))
    a.start()  # and a new member joins: another rebalance
    assert await rig.counted_exactly(workload) == []
    # SIGTERM before a's signal handlers are installed would end it with -15, not a clean exit
    await a.wait_ready()
    assert await b.metric("clicktrack_events_counted_total") > 0
    assert a.terminate() == 0
    assert b.terminate() == 0


@pytest.mark.timeout(300)
async def test_redis_flushed_mid_run_converges_to_postgres(rig: Rig) -> None:
    workload = await rig.publish(30_000, seed=8)
    counter = rig.counter(
        "counter", COUNTER_BATCH_MAX_RECORDS="1000"
    )  # still counting at the flush
    counter.start()
    await rig.wait_for_progress(len(workload.records) // 3)
    await rig.redis.flushdb()
    assert await rig.progress() < len(workload.records)
    assert await rig.counted_exactly(workload) == []
    # once at start (Redis was empty) and once after the flush
    assert await counter.metric("clicktrack_redis_rebuilds_total") == 2
    assert counter.terminate() == 0


@pytest.mark.timeout(300)
async def test_sigterm_commits_the_last_batch(rig: Rig) -> None:
    workload = await rig.publish(20_000, seed=9)
    # batches of 1,000, so that the stop lands mid-run (two default batches are all 20,000)
    counter = rig.counter("counter", COUNTER_BATCH_MAX_RECORDS="1000")
    counter.start()
    await rig.wait_for_progress(0)
    assert counter.terminate() == 0
    stopped_at = await rig.progress()
    assert 0 < stopped_at < len(workload.records)
    # the last batch read is in Postgres, and its offsets went to Kafka (advisory) as well
    assert await kafka_committed(rig.settings) == stopped_at
    restarted = rig.counter("restarted")
    restarted.start()
    await restarted.wait_ready()
    assert await rig.counted_exactly(workload) == []
    assert restarted.terminate() == 0


# `python -m services.counter` whose loop ends on an error it does not expect (a bug, say) at
# its fourth batch.
DYING_COUNTER = """
import runpy
from services.counter.pipeline import Pipeline

real_begin, batches = Pipeline._begin, []

async def begin(self, read):
    batches.append(read)
    if len(batches) == 4:
        raise RuntimeError("injected: a bug in the counter loop")
    return await real_begin(self, read)

Pipeline._begin = begin
runpy.run_module("services.counter", run_name="__main__")
"""


@pytest.mark.timeout(300)
async def test_a_counter_whose_loop_dies_exits_and_its_partitions_move_on(rig: Rig) -> None:
    dying = rig.counter("dying", ["-c", DYING_COUNTER], COUNTER_BATCH_MAX_RECORDS="1000")
    other = rig.counter("other", COUNTER_BATCH_MAX_RECORDS="1000")
    other.start()
    await other.wait_ready()
    dying.start()
    await dying.wait_ready()
    # published once both are in the group, so the dying one has partitions with work on them
    workload = await rig.publish(30_000, seed=13)
    assert dying.proc is not None
    status = await asyncio.to_thread(dying.proc.wait, 60)
    assert status == 70  # shared.service.LOOP_DIED_EXIT_STATUS: restart me
    # its partitions' clicks past its third batch were left for the other one
    assert await rig.progress() < len(workload.records)
    assert await rig.counted_exactly(workload) == []
    log = dying.log_text()
    assert "injected: a bug in the counter loop" in log
    assert "the worker's loop stopped: shutting the process down to be restarted" in log
    assert other.terminate() == 0
