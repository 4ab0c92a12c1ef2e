from __future__ import annotations

import pytest

from services.redirector.security import clip, safe_location
from shared.client_address import ClientAddress


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.in/p/42?ref=sms",
        "http://example.com",
        "https://example.com:8443/a%20b?q=%0d%0a",  # encoded CR/LF stays encoded: harmless
    ],
)
def test_safe_locations(url: str) -> None:
    assert safe_location(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://a.example/\r\nSet-Cookie: x=1",
        "https://a.example/\nLocation: https://evil.example",
        "https://a.example/ x",
        "https://a.example/\x00",
        "https://a.example/\x7f",
        "https://a.example/\u2028",
        "javascript:alert(1)",
        "//evil.example/",
        "https:\\\\evil.example",
        "https://\\evil.example",
        "https:///nohost",
        "https://a.example:99999/",
        "ftp://a.example/",
        "https://a.example/" + "x" * 9000,
    ],
)
def test_unsafe_locations(url: str) -> None:
    assert not safe_location(url)


def test_clip() -> None:
    assert clip(None) is None
    assert clip("") is None
    assert clip("x" * 600) == "x" * 512


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert ClientAddress(()).of("198.51.100.7", "203.0.113.9") == "198.51.100.7"


def test_forwarded_for_is_read_right_to_left_past_trusted_proxies() -> None:
    client = ClientAddress(("10.0.0.0/8",))
    # The visitor forged the first hop; the load balancers appended the real one.
    assert client.of("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.1") == "203.0.113.9"
    assert client.of("10.0.0.2", None) == "10.0.0.2"
    assert client.of("198.51.100.7", "203.0.113.9") == "198.51.100.7"  # peer is not a proxy
    assert client.of("10.0.0.2", "203.0.113.9, garbage") == "10.0.0.2"  # malformed chain
    assert client.of("10.0.0.2", "10.0.0.5, 10.0.0.1") == "10.0.0.5"  # only proxies: the first


def test_every_forwarded_for_line_is_read_as_one_chain() -> None:
    # HAProxy appends a header line of its own: the visitor's forged line comes first, and
    # reading only that one would believe the forgery.
    client = ClientAddress(("10.0.0.0/8",))
    lines = ["1.2.3.4", "203.0.113.9"]
    assert client.of("10.0.0.2", lines) == "203.0.113.9"
    assert client.of("10.0.0.2", ["1.2.3.4, 198.51.100.1", "203.0.113.9, 10.0.0.1"]) == (
        "203.0.113.9"
    )
    assert client.of("10.0.0.2", []) == "10.0.0.2"
