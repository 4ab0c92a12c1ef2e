"""SMS encoding, length and segments: hand-checked boundaries and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    PART_LIMIT,
    SINGLE_LIMIT,
    measure,
    split_segments,
    unit_cost,
)

EURO, DEVANAGARI_A, EMOJI = "€", "अ", "😀"


@pytest.mark.parametrize(
    ("text", "encoding", "length", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", "GSM-7", 44, 1),
        (EURO * 80, "GSM-7", 160, 1),  # 80 extension characters, two septets each
        (EURO * 80 + "a", "GSM-7", 161, 2),
        ("a" * 159 + "^", "GSM-7", 161, 2),
        ("a" * 158 + "[", "GSM-7", 160, 1),
        ("{}[]~\\|^€\f", "GSM-7", 20, 1),
        # 306 septets would fit two parts by division, but the euro at 153 cannot straddle:
        ("a" * 152 + EURO * 77, "GSM-7", 306, 3),
        ("ç", "UCS-2", 1, 1),  # only the capital Ç is in the GSM alphabet
        ("`", "UCS-2", 1, 1),
        (DEVANAGARI_A * 70, "UCS-2", 70, 1),
        (DEVANAGARI_A * 71, "UCS-2", 71, 2),
        (DEVANAGARI_A * 134, "UCS-2", 134, 2),
        (DEVANAGARI_A * 135, "UCS-2", 135, 3),
        (EMOJI * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
        (EMOJI * 35 + "a", "UCS-2", 71, 2),
        ("a" * 66 + EMOJI * 2, "UCS-2", 70, 1),
        ("a" * 66 + EMOJI * 3, "UCS-2", 72, 2),
        ("a" * 66 + EMOJI * 34, "UCS-2", 134, 3),  # the pair at 67 moves whole to part 2
        ("Price €5 " + DEVANAGARI_A, "UCS-2", 10, 1),  # € costs one unit in UCS-2
    ],
)
def test_hand_checked_boundaries(text: str, encoding: str, length: int, segments: int) -> None:
    got = measure(text)
    assert (got.encoding, got.length, got.segments) == (encoding, length, segments)
    assert got.characters == len(text)


def test_the_alphabet_tables_are_the_gsm_03_38_ones() -> None:
    assert len(GSM7_BASIC) == len(set(GSM7_BASIC)) == 127  # 128 minus the escape
    assert "\x1b" not in GSM7_BASIC and set(GSM7_BASIC).isdisjoint(GSM7_EXTENSION)
    assert sorted(GSM7_EXTENSION) == sorted("\f^{}\\[~]|€")


def test_split_never_breaks_an_extension_character_or_a_surrogate_pair() -> None:
    parts = split_segments("a" * 152 + EURO * 77)
    assert [sum(unit_cost(c, "GSM-7") for c in p) for p in parts] == [152, 152, 2]
    parts = split_segments("a" * 66 + EMOJI * 3)
    assert parts == ["a" * 66, EMOJI * 3]


gsm_text = st.text(alphabet=GSM7_BASIC + GSM7_EXTENSION, max_size=500)
any_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(GSM7_BASIC + GSM7_EXTENSION),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    max_size=400,
)


@given(any_text)
def test_parts_rebuild_the_text_and_respect_capacity(text: str) -> None:
    got = measure(text)
    parts = split_segments(text)
    assert "".join(parts) == text
    assert len(parts) == got.segments
    assert got.length == sum(unit_cost(c, got.encoding) for c in text)
    if got.encoding == "UCS-2":
        assert got.length == len(text.encode("utf-16-le")) // 2
    costs = [sum(unit_cost(c, got.encoding) for c in p) for p in parts]
    if len(parts) > 1:
        capacity = PART_LIMIT[got.encoding]
        assert max(costs) <= capacity
        # greedy: a part ends only when the next character would not fit
        for part, cost, following in zip(parts, costs, parts[1:], strict=False):
            assert cost + unit_cost(following[0], got.encoding) > capacity, part
    else:
        assert sum(costs) <= SINGLE_LIMIT[got.encoding]


@given(gsm_text)
def test_gsm_text_is_gsm7_with_extension_characters_costing_two(text: str) -> None:
    got = measure(text)
    assert got.encoding == "GSM-7"
    assert got.length == len(text) + sum(c in GSM7_EXTENSION for c in text)


@given(st.text(alphabet=GSM7_BASIC, max_size=1000))
def test_basic_gsm_segments_are_the_division(text: str) -> None:
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else math.ceil(n / 153)
    assert measure(text).segments == expected


@given(st.text(alphabet="अआइईउऊकखगघ", min_size=1, max_size=700))
def test_bmp_ucs2_segments_are_the_division(text: str) -> None:
    n = len(text)
    assert measure(text).segments == (1 if n <= 70 else math.ceil(n / 67))


@given(gsm_text, st.sampled_from(["अ", "😀", "ç", "`"]))
def test_one_foreign_character_switches_the_whole_text_to_ucs2(text: str, odd: str) -> None:
    assert measure(text + odd).encoding == "UCS-2"
    assert measure(text + odd).length == len((text + odd).encode("utf-16-le")) // 2
