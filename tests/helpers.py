"""Small helpers for tests: waiting on the pipeline (bounded), reading counts, reading topics."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared import events
from shared.counts import CountStore
from shared.links import CreatedLink, create_campaign, create_link, create_org
from shared.recipients import RecipientKeys
from shared.settings import Settings

T = TypeVar("T")


async def wait_for(probe: Callable[[], Awaitable[T]], expected: T, *, seconds: float = 30.0) -> T:
    """Call `probe` until it returns `expected` or `seconds` pass; returns the last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = await probe()
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def pg_counts(pool: asyncpg.Pool, link_id: int) -> tuple[int, int, int]:
    """(total, unique, bots) of a link in Postgres; zeros when it has none."""
    row = await pool.fetchrow(
        "SELECT total_clicks, unique_clicks, bot_clicks FROM link_counters WHERE link_id = $1",
        link_id,
    )
    return (row[0], row[1], row[2]) if row else (0, 0, 0)


async def counts_in_both(
    pool: asyncpg.Pool, store: CountStore, link_id: int, expected: tuple[int, int, int]
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """A link's (Postgres, Redis) counts once both are `expected` (Redis is written right after
    the Postgres commit: wait for both, do not race it), or the last ones after 30 s."""

    async def both() -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        return await pg_counts(pool, link_id), await redis_counts(store, link_id)

    return await wait_for(both, (expected, expected))


async def redis_counts(store: CountStore, link_id: int) -> tuple[int, int, int]:
    """(total, unique, bots) of a link in Redis; zeros when it has none."""
    got = await store.get(link_id)
    return (got.total, got.unique, got.bots) if got else (0, 0, 0)


async def read_topic(
    settings: Settings, topic: str, count: int, seconds: float = 20.0
) -> list[ConsumerRecord]:
    """The first `count` records of `topic` (all partitions), waiting at most `seconds`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + seconds
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def call_json(
    method: str, url: str, body: object = None, token: str | None = None
) -> tuple[int, Any]:
    """A blocking JSON request for tests that drive a service process from sync code: (status,
    decoded body), for error statuses too."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}")


def free_ports(count: int = 1) -> list[int]:
    """`count` consecutive TCP ports free on 127.0.0.1 right now, for a process a test starts.

    Fixed ports collide when two suites run at once (two worktrees against one stack); a port
    picked here can still be taken before the process binds it, but only by a race, not always.
    """
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return list(range(base, base + count))
    raise RuntimeError(f"no {count} consecutive free ports found on 127.0.0.1")


class Forwarder:
    """A TCP forwarder from 127.0.0.1:`port` to `target` ("host:port"): a dependency that can be
    reached late (`start` after the client) or go away (`close` cuts every connection)."""

    def __init__(self, target: str, port: int = 0) -> None:
        host, _, target_port = target.rpartition(":")
        self._target = (host, int(target_port))
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
            self._writers.discard(dst)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def seed_links(pool: asyncpg.Pool, clicks: list[events.ClickEvent]) -> None:
    """The organisations, campaigns and links `clicks` claim, with those ids: what the redirector
    would have resolved them from, and what the counter checks each click against (a click on a
    link that is not the one it claims is dead-lettered). Rows that exist are left alone."""
    links = {c.link_id: c for c in clicks}
    campaigns = {c.campaign_id: c for c in clicks if c.campaign_id is not None}
    orgs = {c.org_id for c in clicks}
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO orgs (id, name) OVERRIDING SYSTEM VALUE"
            " VALUES ($1::bigint, 'org ' || $1::bigint) ON CONFLICT DO NOTHING",
            [(o,) for o in sorted(orgs)],
        )
        await conn.executemany(
            "INSERT INTO campaigns (id, org_id, name, kind, channel) OVERRIDING SYSTEM VALUE"
            " VALUES ($1, $2, 'campaign', $3, $4) ON CONFLICT DO NOTHING",
            [(i, c.org_id, c.campaign_kind, c.channel) for i, c in sorted(campaigns.items())],
        )
        await conn.executemany(
            "INSERT INTO links (id, org_id, campaign_id, destination) OVERRIDING SYSTEM VALUE"
            " VALUES ($1::bigint, $2, $3, 'https://shop.example.in/' || $1::bigint)"
            " ON CONFLICT DO NOTHING",
            [(i, c.org_id, c.campaign_id) for i, c in sorted(links.items())],
        )
        for table in ("orgs", "campaigns", "links"):  # ids made later come after these
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" greatest((SELECT max(id) FROM {table}), 1))"
            )


async def keyed_org(
    pool: asyncpg.Pool,
    settings: Settings,
    name: str,
    recipients: list[str],
    destination: str = "https://shop.example.in/",
) -> tuple[int, int, CreatedLink]:
    """An organisation `name` with tracking on, a one-time campaign, and one link whose codes
    are minted for `recipients` under the settings' recipient key: (org id, campaign id, link)."""
    org_id = await create_org(pool, name, tracking=True)
    campaign = await create_campaign(pool, org_id, "Sale", "one_time")
    link = await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign,
        destination=destination,
        recipients=recipients,
        code_length=10,
        keys=RecipientKeys(settings.api.recipient_key),
    )
    return org_id, campaign, link
