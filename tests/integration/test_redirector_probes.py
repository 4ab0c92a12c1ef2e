"""Hostile requests against the real redirector: no open redirect, no header injection, limits."""

from __future__ import annotations

import asyncio

import aiohttp
import asyncpg
import pytest

from shared.links import CreatedLink, create_link, create_org
from shared.settings import Settings
from tests.integration.redirector_support import Running, events, redirector

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"


@pytest.fixture
async def link(pool: asyncpg.Pool) -> CreatedLink:
    org_id = await create_org(pool, "Acme", tracking=True)
    return await create_link(
        pool, org_id=org_id, destination=DESTINATION, code_length=Settings().links.code_length
    )


@pytest.fixture
async def app(settings: Settings, pool: asyncpg.Pool, topics: list[str]) -> Running:
    async with redirector(settings) as running:
        yield running  # type: ignore[misc]


async def raw_request(url: str, request: bytes) -> bytes:
    """Send `request` bytes as they are (no client library cleaning them) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_the_location_is_the_registered_destination_whatever_the_request_says(
    app: Running, link: CreatedLink
) -> None:
    code = link.codes[None]
    async with aiohttp.ClientSession() as http:
        for suffix in ("?next=https://evil.example", "?url=//evil.example", "#//evil.example"):
            async with http.get(
                f"{app.url}/{code}{suffix}",
                allow_redirects=False,
                headers={"X-Forwarded-Host": "evil.example"},
            ) as resp:
                assert (resp.status, resp.headers["Location"]) == (302, DESTINATION)
            # a host that is no short domain gets nothing, whatever the code
            async with http.get(
                f"{app.url}/{code}{suffix}", allow_redirects=False, headers={"Host": "evil.example"}
            ) as resp:
                assert resp.status == 404 and "Location" not in resp.headers
        for path in ("//evil.example", "/https://evil.example", "/%2F%2Fevil.example"):
            async with http.get(app.url + path, allow_redirects=False) as resp:
                assert resp.status == 404
                assert "Location" not in resp.headers


async def test_crlf_in_the_path_injects_no_header(app: Running, link: CreatedLink) -> None:
    code = link.codes[None]
    for path in (f"/{code}%0d%0aSet-Cookie:%20x=1", f"/{code}%0aLocation:%20https://evil.example"):
        answer = await raw_request(
            app.url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        head = answer.split(b"\r\n\r\n", 1)[0]
        assert head.startswith(b"HTTP/1.1 404 ")
        assert b"evil" not in head.lower() and b"set-cookie: x" not in head.lower()
    # A raw CR/LF inside the request line is a malformed request: refused, nothing reflected.
    answer = await raw_request(
        app.url, f"GET /{code}\rSet-Cookie: x=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.split(b" ")[1] == b"400" and b"set-cookie" not in head.lower()


@pytest.mark.parametrize(
    "stored",
    [
        "https://shop.example.in/\r\nSet-Cookie: pwned=1",
        "https://shop.example.in/\nLocation: https://evil.example",
        "https://shop.example.in/ spaced",
        "https://\\evil.example/",
    ],
)
async def test_a_bad_stored_destination_is_never_sent(
    app: Running, link: CreatedLink, pool: asyncpg.Pool, stored: str
) -> None:
    # The CHECK constraint only wants ^https?://; write around the API's validation on purpose.
    await pool.execute("UPDATE links SET destination = $1 WHERE id = $2", stored, link.link_id)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{app.url}/{link.codes[None]}", allow_redirects=False) as resp,
    ):
        assert resp.status == 404
        assert "Location" not in resp.headers and "pwned" not in resp.headers.get("Set-Cookie", "")
        assert await resp.json() == {"error": "not_found", "detail": "unknown link"}


async def test_only_get_and_head(app: Running, link: CreatedLink) -> None:
    async with aiohttp.ClientSession() as http:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            async with http.request(method, f"{app.url}/{link.codes[None]}") as resp:
                assert resp.status == 405
                assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD"}
                assert (await resp.json())["error"] == "method_not_allowed"


async def test_size_limits(app: Running, link: CreatedLink) -> None:
    answer = await raw_request(
        app.url, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"414")
    assert b"Traceback" not in answer
    answer = await raw_request(
        app.url,
        f"GET /{link.codes[None]} HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 8000}\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"431")
    assert b"Traceback" not in answer
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{app.url}/{link.codes[None]}", data=b"x" * 4096, allow_redirects=False) as resp,
    ):
        assert resp.status == 302  # a body is never read, so its size does not matter


async def test_refused_requests_publish_nothing(
    app: Running, link: CreatedLink, settings: Settings
) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/Zz9Zz9Zz9Z", "/ab", "//evil.example"):
            async with http.get(app.url + path, allow_redirects=False) as resp:
                assert resp.status == 404
    assert await events(settings, 1, seconds=2) == []
    assert app.metric("clicktrack_http_requests_total", {"status": "404"}) == 3
