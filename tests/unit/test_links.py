from __future__ import annotations

import pytest

from services.redirector.resolution import code_shape
from shared.codes import ALPHABET, mint_code
from shared.settings import Settings


@pytest.mark.parametrize("length", [8, Settings().links.code_length, 20])
def test_codes_are_fixed_length_base62_and_do_not_repeat(length: int) -> None:
    codes = [mint_code(length) for _ in range(2000)]
    assert all(len(c) == length and set(c) <= set(ALPHABET) for c in codes)
    defaults = Settings()
    shape = code_shape(defaults.redirector.code_min_length, defaults.redirector.code_max_length)
    assert all(shape.fullmatch(c) for c in codes)  # the redirector looks every one up
    assert len(set(codes)) == 2000


def test_header_values_that_are_not_utf8_become_valid_text() -> None:
    from services.redirector.security import HEADER_MAX, clip

    raw = b"Mozilla \x80\xff ok".decode("utf-8", "surrogateescape")  # as aiohttp hands it over
    cleaned = clip(raw)
    assert cleaned == "Mozilla \ufffd\ufffd ok"
    assert cleaned.encode("utf-8")  # encodable: the event can be written
    assert clip("") is None and clip(None) is None
    assert clip("a" * 1000) == "a" * HEADER_MAX
