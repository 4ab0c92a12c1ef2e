"""Destination normalisation: what is refused and what canonical form is stored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidLinkError
from shared.urls import find_urls, normalise_destination


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://Shop.Example.IN", "https://shop.example.in/"),
        ("http://shop.example.in:80/a?b=1#top", "http://shop.example.in/a?b=1#top"),
        ("https://shop.example.in:443/", "https://shop.example.in/"),
        ("https://shop.example.in:8443/x", "https://shop.example.in:8443/x"),
        ("https://bücher.example/straße?q=ü", "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC"),
        ("https://a.example/p?x=%20&y={1}", "https://a.example/p?x=%20&y=%7B1%7D"),
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        (
            "https://shop.example.in/sale?utm_source=sms&x=%20",
            "https://shop.example.in/sale?utm_source=sms&x=%20",
        ),
    ],
)
def test_destinations_are_normalised(url: str, normal: str) -> None:
    assert normalise_destination(url) == normal
    assert normalise_destination(normal) == normal


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("javascript:alert(1)", "destination must be an http:// or https:// URL"),
        ("//evil.example/x", "destination must be an http:// or https:// URL"),
        ("https:///nohost", "destination has no host"),
        ("https://a.example/\r\nSet-Cookie: x=1", "destination contains spaces or control"),
        ("https://a.example/a b", "destination contains spaces or control"),
        ("https://bank.example@evil.example/", "destination must not carry a user name"),
        ("ftp://a.example/", "destination must be an http:// or https:// URL"),
        ("https:a.example", "destination must be an http:// or https:// URL"),
        ("https://a.example:99999/", "destination is not a valid URL"),
        ("https://a_b!.example/", "destination host 'a_b!.example' is not a valid host name"),
        ("https://a.example/" + "x" * 2048, "destination is longer than 2048 characters"),
        ("https://a.example/\x7f", "destination contains spaces or control characters"),
    ],
)
def test_bad_destinations_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidLinkError) as caught:
        normalise_destination(url)
    assert str(caught.value).startswith(reason)
    assert caught.value.code == "invalid_destination"


@given(st.text(max_size=80))
def test_a_normalised_url_is_safe_for_a_location_header_and_stable(tail: str) -> None:
    try:
        normal = normalise_destination("https://shop.example.in/" + tail)
    except InvalidLinkError:
        return
    assert normal.startswith("https://shop.example.in/")
    assert normal.isascii() and all(0x21 <= ord(c) < 0x7F for c in normal)
    assert normalise_destination(normal) == normal


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
path = st.text(alphabet="abcXYZ0123456789-_~/=&%", max_size=20)


@given(
    st.sampled_from(["http://", "https://", "HTTPS://", "www.", ""]),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["com", "in", "co", "org", "ly"]),
    path,
    st.sampled_from(["", ".", ",", "!", ")"]),
    st.text(alphabet="abc XYZ,'", max_size=10),
)
def test_a_link_in_text_is_found_whole_and_alone(
    scheme: str, labels: list[str], tld: str, tail: str, punctuation: str, words: str
) -> None:
    link = f"{scheme}{'.'.join(labels)}.{tld}/{tail}".rstrip(".,!")
    text = f"{words} {link}{punctuation} {words}"
    found = find_urls(text)
    assert [(f.text, f.start) for f in found] == [(link, len(words) + 1)]
    assert found[0].url == (link if scheme.lower().startswith("http") else "http://" + link)
