"""`kill -9` of a redirector process under load, at seeded random moments, each followed by a
restart: every click answered with a 302 reaches the topic and is counted exactly once.

The redirector runs as `python -m services.redirector` (one process, its own click log folder);
a load generator of concurrent clients sends clicks, each with its own user agent, and notes
which ones got their 302. After the last kill a final run ships what the log holds and stops
(SIGTERM); then a counter process counts the topic. FAULT_REDIRECTOR_KILLS (default 10) sets
the number of kills.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from shared.links import create_link, create_org
from shared.settings import Settings
from tests.faults.harness import ROOT, ClickLoad, Rig, click_number, read_all, wait_until_counted

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("FAULT_REDIRECTOR_KILLS", "10"))
DESTINATION = "https://shop.example.in/p/42?ref=sms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedirectorProcess:
    """One redirector process on `port`, its log folder kept across restarts."""

    def __init__(self, settings: Settings, folder: Path, log: Path) -> None:
        self.port = free_port()
        self._log = log
        self._env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "REDIS_URL": settings.redis.url.reveal(),
            "POSTGRES_DSN": settings.postgres.dsn.reveal(),
            "POSTGRES_SCHEMA": settings.postgres.schema,
            "CLICKS_TOPIC": settings.kafka.clicks_topic,
            "REDIRECTOR_HOST": "127.0.0.1",
            "REDIRECTOR_PORT": str(self.port),
            "REDIRECTOR_WORKERS": "1",
            "REDIRECTOR_METRICS_PORT": "0",
            "SPOOL_DIR": str(folder),
            "LOG_LEVEL": "WARNING",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.redirector"],
                cwd=ROOT,
                env=self._env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        """Start the process and return once it answers `/healthz` (at most 30 s)."""
        self._spawn()
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"redirector not up after 30 s:\n{self._log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL by pid: no drain, no last send, no fsync."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.mark.timeout(600)
async def test_kill_9_of_a_redirector_loses_no_answered_click(
    rig: Rig, fault_rng: random.Random, tmp_path: Path
) -> None:
    settings = rig.settings
    org_id = await create_org(rig.pool, "Acme", tracking=True)
    created = await create_link(
        rig.pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
    )
    code = created.codes[None]
    redirector = RedirectorProcess(settings, tmp_path / "clicklog", rig.logs / "redirector.log")
    load = ClickLoad(redirector.port, code)
    loading = asyncio.create_task(load.run())
    moments = []
    try:
        for _ in range(KILLS):
            await redirector.start()
            moment = fault_rng.uniform(0.05, 1.5)
            moments.append(round(moment, 3))
            await asyncio.sleep(moment)
            redirector.kill()
        await redirector.start()  # the last run ships what the others left, under load
        await asyncio.sleep(1.0)
        load.stop()
        await loading
        assert redirector.terminate() == 0  # SIGTERM: ships the rest of the log
    finally:
        load.stop()
        redirector.ensure_dead()
        await asyncio.gather(loading, return_exceptions=True)

    values = [orjson.loads(v) for v in await read_all(settings, settings.kafka.clicks_topic) if v]
    ids_of: dict[int, set[str]] = {}
    for body in values:
        ids_of.setdefault(click_number(body["user_agent"]), set()).add(body["event_id"])
    lost = sorted(load.answered - set(ids_of))
    twice = sorted(n for n, ids in ids_of.items() if len(ids) > 1)
    print(
        f"redirector kill -9: {KILLS} kills at {moments} s after start, "
        f"{len(load.answered)} clicks answered 302, {load.failed} requests unanswered, "
        f"{len(values)} records on the topic ({len(ids_of)} clicks), lost {len(lost)}"
    )
    assert load.other == []
    assert len(load.answered) > KILLS * 50  # the kills landed under load
    assert lost == []  # every 302 has its event on the topic
    assert twice == []  # and no click became two events
    # A click the process logged but whose 302 the kill cut off is on the topic too: the
    # redirector took it, the visitor may retry. It is counted once like any other.
    assert set(ids_of) - load.answered <= set(range(load.sent))

    counter = rig.counter("counter")
    counter.start()
    event_ids = {i for ids in ids_of.values() for i in ids}
    assert await wait_until_counted(rig.pool, settings, len(values), 120) == len(values)
    counted = {r["event_id"] for r in await rig.pool.fetch("SELECT event_id FROM processed_events")}
    total = await rig.pool.fetchval(
        "SELECT total_clicks FROM link_counters WHERE link_id = $1", created.link_id
    )
    assert counter.terminate() == 0
    assert {str(i) for i in counted} == event_ids
    assert total == len(ids_of)  # every click exactly once
