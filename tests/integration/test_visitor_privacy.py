"""The visitor's privacy and the uniques' integrity on the real stack: a signed cookie that cannot
be forged, a Secure cookie over HTTPS, and no IP recoverable from a published event."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import orjson
import pytest

from services.counter.counter import Counter
from services.redirector.visitors import COOKIE_NAME, VisitorKeys
from shared.links import CreatedLink, create_link, create_org
from shared.settings import Settings
from tests.helpers import pg_counts, read_topic, wait_for
from tests.integration.redirector_support import redirector

pytestmark = pytest.mark.integration

PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/124.0 Mobile Safari/537.36"
OLD_PUBLIC_KEY = b"dev-only-visitor-key"
"""The visitor-hash key every deployment used to run with: it was in the repository."""


@pytest.fixture
async def link(pool: asyncpg.Pool) -> CreatedLink:
    org_id = await create_org(pool, "Acme", tracking=True)
    return await create_link(
        pool,
        org_id=org_id,
        campaign_id=None,
        destination="https://shop.example.in/p",
        code_length=10,
    )


@pytest.fixture
async def counter(settings: Settings, pool: asyncpg.Pool, topics: list[str]) -> AsyncIterator[None]:
    running = Counter(settings)
    await running.start()
    yield
    await running.stop()


async def tap(url: str, ua: str, cookie: str | None = None, **headers: str) -> str | None:
    """One tap (302 expected); the `Set-Cookie` line of our cookie, or None."""
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE_NAME}={cookie}"
    async with (
        aiohttp.ClientSession(headers={"User-Agent": ua, **headers}) as http,
        http.get(url, allow_redirects=False) as resp,
    ):
        assert resp.status == 302
        morsel = resp.cookies.get(COOKIE_NAME)
        return None if morsel is None else morsel.OutputString()


async def test_forged_cookies_do_not_create_uniques(
    settings: Settings, link: CreatedLink, counter: None, pool: asyncpg.Pool
) -> None:
    keys = VisitorKeys(settings.redirector.visitor_hash_key.reveal().encode())
    async with redirector(settings) as app:
        url = f"{app.url}/{link.codes[None]}"
        first = await tap(url, PHONE)
        assert first is not None
        genuine = first.split(";")[0].split("=", 1)[1]
        visitor = genuine.split(".")[0]
        assert keys.verify(genuine) == (visitor, True)
        # A script taps the shared code with made-up cookies, hoping each is a new visitor.
        forged = [secrets.token_hex(16) for _ in range(10)]  # the old, unsigned shape
        signed = [keys.sign(secrets.token_hex(16)) for _ in range(5)]
        forged += [c[:-1] + ("1" if c[-1] == "0" else "0") for c in signed]  # altered
        forged += [VisitorKeys(secrets.token_bytes(32)).sign(secrets.token_hex(16))] * 5
        for cookie in forged:
            # ignored: the tap is the address+UA visitor, whose cookie comes back signed
            assert (await tap(url, PHONE, cookie)) == first
        # the genuine cookie is the same visitor from another browser string
        assert await tap(url, "Another/1.0", genuine) is None
        # and a second person is a second unique
        assert await tap(url, "Mozilla/5.0 (iPhone) Mobile Safari/604.1") is not None
    assert await wait_for(lambda: pg_counts(pool, link.link_id), (23, 2, 0)) == (23, 2, 0)


@pytest.mark.parametrize(
    ("trusted", "headers", "secure"),
    [
        ((), {}, False),
        ((), {"X-Forwarded-Proto": "https"}, False),  # anyone can send the header
        (("127.0.0.0/8",), {"X-Forwarded-Proto": "https"}, True),
        (("127.0.0.0/8",), {"X-Forwarded-Proto": "http"}, False),
    ],
)
async def test_the_cookie_is_secure_when_the_visitor_came_over_https(
    settings: Settings,
    link: CreatedLink,
    topics: list[str],
    trusted: tuple[str, ...],
    headers: dict[str, str],
    secure: bool,
) -> None:
    async with redirector(settings.changed(TRUSTED_PROXIES=trusted)) as app:
        line = await tap(f"{app.url}/{link.codes[None]}", PHONE, **headers)
    assert line is not None
    attributes = {part.strip().split("=")[0].lower() for part in line.split(";")[1:]}
    assert ("secure" in attributes) is secure
    assert {"httponly", "samesite", "max-age", "path"} <= attributes


def brute_force(event: dict[str, str], key: bytes) -> str | None:
    """The full IPv4 address behind `event`, found by trying the 256 of its published /24."""
    prefix = event["ip"].rsplit(".", 1)[0]
    for last in range(256):
        candidate = f"{prefix}.{last}"
        message = f"{candidate}|{event['user_agent']}".encode()
        if "v:" + hmac.new(key, message, hashlib.sha256).hexdigest()[:32] == event["visitor_id"]:
            return candidate
    return None


async def test_the_ip_behind_a_published_event_cannot_be_brute_forced(
    settings: Settings, link: CreatedLink, topics: list[str]
) -> None:
    """With the default configuration (no key set) the key is the process's own random one: the
    attack that used to take 256 tries with the public default finds nothing."""
    assert Settings.from_env({}).redirector.visitor_hash_key != settings.redirector.visitor_hash_key
    async with redirector(settings) as app:
        await tap(f"{app.url}/{link.codes[None]}", PHONE)
    (record,) = await read_topic(settings, settings.kafka.clicks_topic, 1)
    event = orjson.loads(record.value)
    assert (event["ip"], event["user_agent"]) == ("127.0.0.0", PHONE)
    for guess in (OLD_PUBLIC_KEY, b"", b"clicktrack", b"dev-only"):
        assert brute_force(event, guess) is None
    # the attack itself works: with the key the redirector really used it finds the address
    assert brute_force(event, settings.redirector.visitor_hash_key.reveal().encode()) == "127.0.0.1"
