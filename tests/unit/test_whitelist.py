"""The DLT whitelist's pure parts: entries from their parts and from a CSV, and what a link
needs (no services)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.errors import InvalidInputError, TemplateError
from shared.whitelist import Entry, NewEntry, Whitelist, new_entry, parse_csv


def entry(kind: str, value: str, header: str | None = None, ref: str | None = None) -> Entry:
    return Entry(0, 1, kind, value, header, ref, None, datetime(2026, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]


def test_an_entry_is_a_short_domain_or_a_url_prefix() -> None:
    assert new_entry(" S.Brand.in ", "acmein", "R1", "01-10-2024") == NewEntry(
        "short_domain", "s.brand.in", "ACMEIN", "R1", date(2024, 10, 1)
    )
    assert new_entry("Shop.Brand.in/Offers/") == NewEntry("url", "shop.brand.in/Offers/")
    assert new_entry("HTTPS://Shop.in").value == "https://shop.in"
    for bad in (("s.brand.in", "ACME"), ("https://x.in/", "ACMEIN"), ("ftp://x.in/",)):
        with pytest.raises(InvalidInputError):
            new_entry(*bad)
    with pytest.raises(InvalidInputError):
        new_entry("s.brand.in", None, None, "1 Oct 2024")


def test_csv_expands_headers_and_refuses_all_when_a_line_is_bad() -> None:
    sheet = "\ufeffvalue,header\ns.b.in,AAAAAA; BBBBBB\nb.in/x,\n"
    assert parse_csv(sheet) == [
        NewEntry("short_domain", "s.b.in", "AAAAAA"),
        NewEntry("short_domain", "s.b.in", "BBBBBB"),
        NewEntry("url", "b.in/x"),
    ]
    with pytest.raises(InvalidInputError) as caught:
        parse_csv(sheet + "bad value,\nok.in,XX\n")
    assert caught.value.code == "invalid_csv"
    assert caught.value.detail.startswith("nothing imported: line 4: ") and "line 5: " in (
        caught.value.detail
    )
    for head in ("", "domain,header\n", "value,colour\n"):
        with pytest.raises(InvalidInputError):
            parse_csv(head + "s.b.in,\n")


def test_what_a_link_needs() -> None:
    listed = Whitelist(
        [entry("short_domain", "s.b.in", "AAAAAA", "R1"), entry("short_domain", "all.in"),
         entry("url", "shop.in"), entry("url", "https://b.in/offers/", ref="R2")],
        enforced=True,
    )  # fmt: skip
    assert listed.short_link("s.b.in", "AAAAAA").whitelisted
    assert not listed.short_link("s.b.in", "BBBBBB").whitelisted
    assert not listed.short_link("s.b.in", None).whitelisted
    assert listed.short_link("all.in", None).whitelisted
    assert listed.short_link("all.in", "CCCCCC").whitelisted
    assert listed.plain_url("http://Shop.in/any?x").whitelisted
    assert not listed.plain_url("shop.india.com/x").whitelisted
    assert listed.plain_url("b.in/offers/diwali").dlt_ref == "R2"
    assert not listed.plain_url("https://b.in/other").whitelisted
    with pytest.raises(TemplateError) as caught:
        listed.require(listed.short_link("s.b.in", "BBBBBB"), 2)
    assert caught.value.context == {
        "slot": 2, "kind": "short_domain", "entry": "s.b.in", "header": "BBBBBB"
    }  # fmt: skip
    Whitelist([], enforced=False).require(listed.plain_url("x.in/y"), 0)  # not enforced: passes
