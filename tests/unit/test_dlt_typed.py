"""Typed DLT variables (TRAI direction of 18 November 2025): tags inline or in a separate list,
links only in link slots, values that fit their tags, limits per tag."""

from __future__ import annotations

import pytest

from services.api.dlt import LEGACY_WARNING, check_slots, parse_template, render, tag_limits
from shared.errors import SettingsError, TemplateError

URL = "https://shop.example.in/diwali?utm_source=sms"


def refusal(template: str, values: list[str], types: list[str] | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        check_slots(parse_template(template, types), values)
    return caught.value


def test_tags_inline_or_apart_type_the_same_template() -> None:
    inline = parse_template("Hi {#alphanumeric#}, Rs {#number#} at {#url#}, {#email#}")
    apart = parse_template(
        "Hi {#var#}, Rs {#var#} at {#var#}, {#var#}", ["alphanumeric", "numeric", "url", "email"]
    )
    assert inline == apart
    assert inline.kinds == ("alphanumeric", "numeric", "url", "email")
    assert inline.link_slots == (2,) and inline.warnings == ()
    legacy = parse_template("Hi {#var#} {#var#}")
    assert legacy.kinds == () and legacy.link_slots == (0, 1)
    assert legacy.warnings == (LEGACY_WARNING,)


@pytest.mark.parametrize(
    ("template", "types", "code"),
    [
        ("Hi {#numeric#}", ["url"], "slot_types_mismatch"),
        ("Hi {#var#}", ["url", "url"], "slot_types_mismatch"),
        ("Hi {#var#}", ["phone"], "unsupported_variable"),
        ("Hi {#Numeric#}", None, "unsupported_variable"),
        ("Hi {#numeric#} at https://x.in", None, "link_outside_var"),
    ],
)
def test_bad_typing_is_refused(template: str, types: list[str] | None, code: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(template, types)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("tag", "good", "bad"),
    [
        ("numeric", "0042", "42.5"),
        ("alphanumeric", "Asha42", "Asha K"),
        ("cbn", "+919800000001", "98000-00001"),
        ("email", "asha@example.in", "asha at example"),
        ("url", URL, f"{URL} now"),
        ("urlott", "https://app.example.in/open", "open the app"),
    ],
)
def test_a_value_must_fit_its_tag(tag: str, good: str, bad: str) -> None:
    template = "Hi {#var#}: {#" + tag + "#}"
    check_slots(parse_template(template), ["Asha", good])
    caught = refusal(template, ["Asha", bad])
    assert (caught.code, caught.context) == ("invalid_var_value", {"slot": 1, "tag": tag})


def test_a_link_outside_a_link_slot_names_slot_and_position() -> None:
    caught = refusal("Hi {#alphanumeric#}, code {#numeric#}", ["Asha", "12 pay.in/x"])
    assert (caught.code, caught.context) == ("link_outside_url_var", {"slot": 1, "position": 3})
    check_slots(parse_template("Hi {#var#}"), [f"see {URL}"])  # legacy slots still take links


def test_limits_are_per_tag_and_a_url_slot_counts_the_short_link() -> None:
    limits = tag_limits(["email=40", "number=8"], 30)
    assert limits == {"numeric": 8, "alphanumeric": 30, "url": 30, "urlott": 30, "cbn": 30,
                      "email": 40}  # fmt: skip
    template = parse_template("Rs {#numeric#} at {#url#}")
    with pytest.raises(TemplateError) as caught:
        render(template, ["123456789", URL], {URL: "s.ex.in/AbCdEfGhIj"}, tag_limits=limits)
    assert caught.value.context == {"slot": 0, "length": 9, "limit": 8}
    done = render(template, ["12345678", URL], {URL: "s.ex.in/AbCdEfGhIj"}, tag_limits=limits)
    assert done.text == "Rs 12345678 at s.ex.in/AbCdEfGhIj"
    with pytest.raises(TemplateError) as caught:
        render(template, ["1", URL], {URL: "s.brand-name.in/ABCDEF/AbCdEfGhIj"}, tag_limits=limits)
    assert caught.value.context == {"slot": 1, "length": 33, "limit": 30}
    with pytest.raises(SettingsError):
        tag_limits(["phone=10"], 30)
