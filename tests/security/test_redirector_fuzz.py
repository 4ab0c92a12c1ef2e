"""The redirector fuzzed over raw HTTP: odd paths, invalid UTF-8, CRLF, huge headers.

Whatever arrives, it answers 302 only to the registered destination, and never 5xx, never a
header it did not mean to send, never a Location anywhere else.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.redirector.app import Redirector
from shared import db
from shared.kafka import ensure_topics
from shared.links import create_link, create_org
from shared.settings import Settings
from tests.conftest import own_settings

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/fuzz?x=1"
FUZZ = hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass(frozen=True)
class Live:
    port: int
    code: str


@pytest.fixture(scope="module")
def live(
    service_addresses: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A real redirector on 127.0.0.1, served from a thread so that sync tests can fuzz it."""
    conf = own_settings(service_addresses, tmp_path_factory.mktemp("fuzz")).changed(
        TOPIC_PARTITIONS=1
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> tuple[Redirector, Live]:
        async with db.pool(conf.postgres, max_size=1) as pool:
            async with pool.acquire() as conn:
                await db.migrate(conn, conf.postgres.schema)
            org = await create_org(pool, "Fuzz", tracking=True)
            link = await create_link(
                pool, org_id=org, destination=DESTINATION, code_length=Settings().links.code_length
            )
        await ensure_topics(conf.kafka)
        running = Redirector(conf)
        await running.start("127.0.0.1", 0)
        port = int(running.url.rsplit(":", 1)[1])
        return running, Live(port, link.codes[None])

    async def stop(running: Redirector) -> None:
        await running.stop()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        async with db.pool(conf.postgres, max_size=1) as pool:
            await pool.execute(f'DROP SCHEMA "{conf.postgres.schema}" CASCADE')

    runner, info = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield info
    finally:
        asyncio.run_coroutine_threadsafe(stop(runner), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def exchange(port: int, request: bytes) -> tuple[int, dict[bytes, list[bytes]]]:
    """Send raw bytes, return the status and the response headers (lower-cased names)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0].startswith(b"HTTP/1."), head[0]  # aiohttp answers parse errors in HTTP/1.0
    status = int(head[0].split(b" ")[1])
    headers: dict[bytes, list[bytes]] = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers


def assert_safe(status: int, headers: dict[bytes, list[bytes]]) -> None:
    assert status < 500, status
    if status == 302:
        assert headers[b"location"] == [DESTINATION.encode()]
    else:
        assert b"location" not in headers
    assert b"x-injected" not in headers
    assert all(b"injected=1" not in v for v in headers.get(b"set-cookie", []))


path_bytes = st.one_of(
    st.binary(min_size=0, max_size=300),
    st.text(min_size=0, max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"//evil.example",
            b"/\\evil.example",
            b"/%2F%2Fevil.example",
            b"/http://evil.example",
            b"/javascript:alert(1)",
            b"/%0d%0aLocation:%20https://evil.example",
            b"/..%2f..%2fetc%2fpasswd",
            b"/" + b"A" * 9000,
        ]
    ),
)


@FUZZ
@given(raw=path_bytes)
def test_any_path_is_answered_safely(live: Live, raw: bytes) -> None:
    path = raw.replace(b"\r", b"").replace(b"\n", b"").replace(b" ", b"%20")
    if not path.startswith(b"/"):
        path = b"/" + path
    status, headers = exchange(live.port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert_safe(status, headers)


header_value = st.one_of(
    st.binary(min_size=0, max_size=2000).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
    st.sampled_from(
        [
            b"x\r\nX-Injected: 1",
            b"x\r\nSet-Cookie: injected=1",
            b"\xff\xfe\xfd",
            b"A" * 20000,
            b"A" * 200000,
        ]
    ),
)


@FUZZ
@given(
    name=st.sampled_from([b"User-Agent", b"Referer", b"Cookie", b"X-Forwarded-For", b"Accept"]),
    value=header_value,
)
def test_any_header_is_answered_safely(live: Live, name: bytes, value: bytes) -> None:
    head = f"GET /{live.code} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    request = head + name + b": " + value + b"\r\n\r\n"
    status, headers = exchange(live.port, request)
    assert_safe(status, headers)


@pytest.mark.parametrize(
    "method", [b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT"]
)
def test_only_get_and_head_are_served(live: Live, method: bytes) -> None:
    status, headers = exchange(
        live.port, method + f" /{live.code} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    )
    assert status in (400, 404, 405), status  # CONNECT with a path does not match a route
    assert b"location" not in headers


def test_a_request_body_is_refused_before_it_is_read(live: Live) -> None:
    status, _ = exchange(
        live.port,
        f"POST /{live.code} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Length: 50000000\r\n\r\n".encode(),
    )
    assert status in (405, 413), status
