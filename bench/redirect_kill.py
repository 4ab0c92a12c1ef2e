"""(g) of `bench/redirect`: `kill -9` of a redirector process under load, then a restart.

Python clients (aiohttp) send clicks, each with a numbered User-Agent, and note which ones got
their 302. At a seeded random moment the redirector is killed with SIGKILL, started again on the
same click log folder, loaded a while longer and stopped with SIGTERM. Then the topic is read:
`lost_after_kill` is the number of clicks answered with a 302 that have no event on the topic
(must be 0); `doubled_after_kill` the clicks that became two events (must be 0: a resend of one
event is fine, the counter deduplicates it, but not a second event id).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.faults.harness import ClickLoad, click_number

if TYPE_CHECKING:
    from bench.redirect_bench import Bench


async def clicks_on_topic(bootstrap: str, topic: str) -> tuple[int, dict[int, set[str]]]:
    """Records on `topic` and, per click number, its event ids."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records, ids = 0, dict[int, set[str]]()
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    body = orjson.loads(record.value)
                    ids.setdefault(click_number(body["user_agent"]), set()).add(body["event_id"])
                    records += 1
        return records, ids
    finally:
        await consumer.stop()


async def measure_kill(
    port: int,
    code: str,
    *,
    start: Callable[[], None],
    kill: Callable[[], None],
    stop: Callable[[], None],
    moment_s: float,
    after_s: float,
    bootstrap: str,
    topic: str,
) -> dict[str, float]:
    """Load, kill -9 after `moment_s`, restart, load `after_s` more, SIGTERM; the figures.

    `start` starts the redirector and returns once it answers; `kill` and `stop` end it.
    """
    clients = ClickLoad(port, code)
    await asyncio.to_thread(start)
    loading = asyncio.create_task(clients.run())
    await asyncio.sleep(moment_s)
    kill()
    killed_at = time.monotonic()
    await asyncio.to_thread(start)
    restart_s = time.monotonic() - killed_at
    await asyncio.sleep(after_s)
    clients.stop()
    await loading
    await asyncio.to_thread(stop)
    records, ids = await clicks_on_topic(bootstrap, topic)
    return {
        "kill_moment_s": round(moment_s, 3),
        "kill_restart_s": round(restart_s, 2),
        "kill_answered": len(clients.answered),
        "kill_unanswered": clients.failed,
        "kill_records": records,
        "lost_after_kill": len(clients.answered - set(ids)),
        "doubled_after_kill": sum(len(v) > 1 for v in ids.values()),
    }


def kill_run(bench: Bench, port: int, seed: int) -> dict[str, Any]:
    """(g): kill -9 of a one-process redirector under load, a restart, the clicks lost."""
    kafka = bench.settings.kafka.bootstrap_servers
    running: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        running.append(bench.redirector("kill", port, 1, kafka, bench.kill_topic))
        from bench.redirect_bench import wait_http  # the bench's module imports this one

        wait_http(port, "/healthz")

    def kill() -> None:
        proc = running.pop()
        proc.kill()
        proc.wait()
        bench.procs.remove(proc)

    moment = random.Random(seed).uniform(1.0, 4.0)
    return asyncio.run(
        measure_kill(
            port,
            bench.code,
            start=start,
            kill=kill,
            stop=lambda: bench.stop(running.pop()),
            moment_s=moment,
            after_s=3.0,
            bootstrap=kafka,
            topic=bench.kill_topic,
        )
    )
