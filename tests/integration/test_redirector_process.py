"""The redirector as it runs in production: `python -m services.redirector`, several workers on
one port (SO_REUSEPORT), and SIGTERM draining every worker's queue to Kafka before exit."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from shared.links import create_link, create_org
from shared.settings import Settings
from tests.helpers import free_ports, read_topic

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148 Safari/604.1"


@pytest.mark.timeout(180)
async def test_workers_share_the_port_and_sigterm_loses_nothing(
    settings: Settings, pool: asyncpg.Pool, topics: list[str], tmp_path: Path
) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    code = (
        await create_link(
            pool, org_id=org_id, destination=DESTINATION, code_length=settings.links.code_length
        )
    ).codes[None]
    (port,) = free_ports()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "REDIS_URL": settings.redis.url.reveal(),
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "CLICKS_TOPIC": settings.kafka.clicks_topic,
        "REDIRECTOR_PORT": str(port),
        "REDIRECTOR_WORKERS": "2",
        "REDIRECTOR_METRICS_PORT": "0",
        "SPOOL_DIR": str(tmp_path / "spool"),
        "LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.redirector", env=env
    )
    try:
        async with aiohttp.ClientSession() as http:
            spools = [tmp_path / "spool" / f"worker-{i}" for i in range(2)]
            for _ in range(300):  # both workers up: bounded wait (30 s)
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        # A worker opens its spool once its SIGTERM handler is in place; one
                        # still importing would die of the signal with nothing to drain.
                        if (
                            resp.status == 200
                            and len(workers_of(proc.pid)) == 2
                            and all(spool.is_dir() for spool in spools)
                        ):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            statuses = []
            for i in range(200):
                # A new connection each time, so the kernel may pick either worker.
                async with http.get(
                    f"http://127.0.0.1:{port}/{code}",
                    headers={"User-Agent": f"{PHONE} p/{i}", "Connection": "close"},
                    allow_redirects=False,
                ) as resp:
                    statuses.append(resp.status)
        assert statuses == [302] * 200
        assert len(workers_of(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert sorted(os.listdir(tmp_path / "spool")) == ["worker-0", "worker-1"]
    records = await read_topic(settings, settings.kafka.clicks_topic, 201, seconds=5)
    assert sorted(r.value.split(b'"user_agent":"')[1].split(b'"')[0] for r in records) == sorted(
        f"{PHONE} p/{i}".encode() for i in range(200)
    )


def workers_of(parent: int) -> list[int]:
    """Pids of the live children of `parent` (the redirector's workers)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(pid))
    return found
