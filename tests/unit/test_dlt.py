"""DLT templates: slot parsing, links outside slots, value limits, rendering (pure code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.dlt import VAR, parse_template, render, slot_urls
from shared.errors import TemplateError
from shared.urls import find_urls

# Text that can never contain a link: no '.', ':' or '/'.
plain = st.text(alphabet="abcdefXYZ 0123456789,!-'\n€अ", max_size=30)


@given(st.lists(plain, min_size=1, max_size=6))
def test_parse_finds_the_fixed_text_between_slots(parts: list[str]) -> None:
    template = VAR.join(parts)
    if not template.strip():
        return
    parsed = parse_template(template)
    assert parsed.fixed == tuple(parts)
    assert parsed.slots == len(parts) - 1


@given(st.lists(plain, min_size=2, max_size=6), st.data())
def test_fill_puts_each_value_in_its_slot(parts: list[str], data: st.DataObject) -> None:
    template = VAR.join(parts)
    values = data.draw(st.lists(plain, min_size=len(parts) - 1, max_size=len(parts) - 1))
    parsed = parse_template(template)
    expected = parts[0] + "".join(v + p for v, p in zip(values, parts[1:], strict=True))
    assert parsed.fill(values) == expected
    done = render(parsed, values, None, var_limit=30)
    assert done.text == done.original_text == expected


@given(plain, plain, st.sampled_from(["https://x.example.in/a", "www.shop.in", "bit.ly/abc"]))
def test_a_link_in_fixed_text_is_refused_at_its_position(
    before: str, after: str, link: str
) -> None:
    template = f"{before} {VAR} {link} {after}"
    with pytest.raises(TemplateError) as caught:
        parse_template(template)
    assert caught.value.code == "link_outside_var"
    assert caught.value.context["position"] == template.index(link)


@pytest.mark.parametrize(
    ("template", "position"),
    [
        ("Visit https://shop.example.in/sale now {#var#}", 6),
        ("{#var#} or see www.example.com", 15),
        ("Hi {#var#}, offer at shop.example.in/x. Code {#var#}", 21),
        ("Hi {#var#}{#var#}http://a.in", 17),
    ],
)
def test_link_outside_var_names_the_position(template: str, position: int) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(template)
    assert (caught.value.code, caught.value.context["position"]) == ("link_outside_var", position)
    assert f"position {position}" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "code"),
    [
        ("", "empty_template"),
        ("   ", "empty_template"),
        ("Dear {#name#}, hi", "unsupported_variable"),
        ("Dear {#VAR#}", "unsupported_variable"),
    ],
)
def test_malformed_templates_are_refused(template: str, code: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(template)
    assert caught.value.code == code


def test_value_count_must_match_the_slots() -> None:
    parsed = parse_template("Hi {#var#}, your code {#var#}")
    for values in (["a"], ["a", "b", "c"]):
        with pytest.raises(TemplateError) as caught:
            render(parsed, values, None)
        assert caught.value.code == "var_count_mismatch"
        assert str(caught.value) == (
            f"the template has 2 slot(s) but {len(values)} value(s) were given"
        )


def test_links_in_values_become_short_links_and_the_change_is_measured() -> None:
    parsed = parse_template("Sale! Shop {#var#} before {#var#}. T&C apply")
    long_url = "https://shop.example.in/diwali?utm=1"  # 36 characters: over the limit as is
    short = "s.ex.in/AbCdEfGhIj"
    done = render(parsed, [long_url, "Sunday"], {long_url: short}, var_limit=30)
    assert done.text == f"Sale! Shop {short} before Sunday. T&C apply"
    assert done.original_text == f"Sale! Shop {long_url} before Sunday. T&C apply"
    # 11 + 18 + 8 + 6 + 11 characters
    assert (done.sms.encoding, done.sms.length, done.sms.segments) == ("GSM-7", 54, 1)
    assert done.original.length == 72  # 11 + 36 + 8 + 6 + 11
    assert [(x.slot, x.url, x.replacement) for x in done.links] == [(0, long_url, short)]


def test_a_value_over_the_limit_is_refused_naming_the_slot() -> None:
    parsed = parse_template("Hi {#var#} go {#var#}")
    long_url = "https://shop.example.in/diwali?utm=1"
    with pytest.raises(TemplateError) as caught:
        render(parsed, ["Asha", long_url], None, var_limit=30)
    assert caught.value.code == "var_too_long"
    assert caught.value.context == {"slot": 1, "length": 36, "limit": 30}
    assert str(caught.value) == (
        "slot 1 would hold 36 characters, more than the limit of 30"
        " (its links are not shortened: link tracking is off)"
    )
    # with a short link that itself is too long for a tight limit
    with pytest.raises(TemplateError) as caught:
        render(parsed, ["Asha", long_url], {long_url: "s.ex.in/AbCdEfGhIj"}, var_limit=12)
    assert caught.value.context == {"slot": 1, "length": 18, "limit": 12}
    assert str(caught.value).endswith("limit of 12 even with its links shortened")


def test_tracking_off_leaves_links_untouched() -> None:
    parsed = parse_template("Pay at {#var#}")
    done = render(parsed, ["www.pay.in/x"], None)
    assert done.text == done.original_text == "Pay at www.pay.in/x"
    assert [(x.url, x.replacement) for x in done.links] == [("www.pay.in/x", "www.pay.in/x")]


def test_slot_urls_lists_links_as_a_phone_opens_them() -> None:
    found = slot_urls(["see bit.ly/x, and", "HTTPS://A.in/(b)).", "mail care@shop.in"])
    assert [(slot, link.text, link.url) for slot, link in found] == [
        (0, "bit.ly/x", "http://bit.ly/x"),
        (1, "HTTPS://A.in/(b)", "HTTPS://A.in/(b)"),
    ]


@pytest.mark.parametrize(
    ("text", "links"),
    [
        ("(see http://w.in/a_(b)).", ["http://w.in/a_(b)"]),
        ("http://" + ")" * 20_000, []),
        ("http://x.in/" + ".)" * 10_000, ["http://x.in/"]),
        ("go to WWW.Shop.in/Sale!", ["WWW.Shop.in/Sale"]),
    ],
)
def test_trailing_punctuation_and_unbalanced_brackets_are_not_part_of_a_link(
    text: str, links: list[str]
) -> None:
    assert [link.text for link in find_urls(text)] == links


@pytest.mark.parametrize(
    "text",
    ["Rs.500 off", "e.g. today", "Valid till 31.12.2026", "a.m. to p.m.", "Ver 1.2.3", "care@x.in"],
)
def test_ordinary_text_has_no_links(text: str) -> None:
    assert find_urls(text) == []


LINKS = ["https://shop.example.in/a?b=1", "www.acme.in/sale", "bit.ly/x9"]


@given(
    st.lists(
        st.lists(st.one_of(plain, st.sampled_from(LINKS)), max_size=3).map(" ".join),
        min_size=1,
        max_size=4,
    )
)
def test_rendering_swaps_every_link_and_the_change_adds_up(values: list[str]) -> None:
    parsed = parse_template("Hi " + " and ".join([VAR] * len(values)) + ".")
    short = {f"http://{u}" if "://" not in u else u: "s.in/0123456789" for u in LINKS}
    done = render(parsed, values, short, var_limit=10_000)
    found = slot_urls(values)
    assert len(done.links) == len(found)
    assert all(u not in done.text for u in LINKS)
    assert done.text.count("s.in/0123456789") == len(found)
    saved = sum(len(link.text) - len("s.in/0123456789") for _, link in found)
    assert done.sms.characters == done.original.characters - saved
    assert done.original_text == parsed.fill(values)
