from __future__ import annotations

import pytest

from services.redirector.resolution import CODE_SHAPE
from services.redirector.visitors import visitor_id
from shared.codes import ALPHABET, CODE_LENGTH, mint_code
from shared.links import InvalidLinkError, validate_destination


def test_codes_are_fixed_length_base62_and_do_not_repeat() -> None:
    codes = [mint_code() for _ in range(2000)]
    assert all(len(c) == CODE_LENGTH and set(c) <= set(ALPHABET) for c in codes)
    assert all(CODE_SHAPE.fullmatch(c) for c in codes)
    assert len(set(codes)) == 2000


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "destination must be an http:// or https:// URL"),
        ("//evil.example/x", "destination must be an http:// or https:// URL"),
        ("https:///nohost", "destination has no host"),
        ("https://a.example/\r\nSet-Cookie: x=1", "destination contains spaces or control"),
        ("https://a.example/a b", "destination contains spaces or control"),
    ],
)
def test_unsafe_destinations_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidLinkError) as caught:
        validate_destination(url)
    assert str(caught.value).startswith(reason)


def test_safe_destination_is_kept_as_given() -> None:
    url = "https://shop.example.in/sale?utm_source=sms&x=%20"
    assert validate_destination(url) == url


def test_visitor_identity_strongest_first() -> None:
    key = b"k"
    assert visitor_id(
        recipient_id="r42", cookie="a" * 32, ip="1.2.3.4", user_agent="UA", key=key
    ) == (
        "r:r42",
        None,
    )
    assert visitor_id(
        recipient_id=None, cookie="a" * 32, ip="1.2.3.4", user_agent="UA", key=key
    ) == (
        "v:" + "a" * 32,
        None,
    )
    vid, cookie = visitor_id(recipient_id=None, cookie=None, ip="1.2.3.4", user_agent="UA", key=key)
    assert cookie is not None and vid == f"v:{cookie}"
    # the cookie we set identifies the same visitor on the next click, from any address
    assert visitor_id(recipient_id=None, cookie=cookie, ip="9.9.9.9", user_agent="UA", key=key) == (
        vid,
        None,
    )


def test_a_forged_cookie_is_not_trusted() -> None:
    vid, cookie = visitor_id(
        recipient_id=None, cookie="<script>", ip="1.2.3.4", user_agent="UA", key=b"k"
    )
    assert cookie is not None and vid == f"v:{cookie}"


def test_header_values_that_are_not_utf8_become_valid_text() -> None:
    from services.redirector.security import HEADER_MAX, clip

    raw = b"Mozilla \x80\xff ok".decode("utf-8", "surrogateescape")  # as aiohttp hands it over
    cleaned = clip(raw)
    assert cleaned == "Mozilla \ufffd\ufffd ok"
    assert cleaned.encode("utf-8")  # encodable: the event can be written
    assert clip("") is None and clip(None) is None
    assert clip("a" * 1000) == "a" * HEADER_MAX
