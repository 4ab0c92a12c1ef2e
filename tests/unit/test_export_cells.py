"""CSV cells that a spreadsheet would run as a formula are neutralised, whatever wrote them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.api.export import cell, slices
from services.api.window import Window
from shared.clickers import spreadsheet_safe


@pytest.mark.parametrize(
    ("text", "safe"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("\r=x", "'\r=x"),
        ("sms", "sms"),
        ("one_time", "one_time"),
        ("", ""),
    ],
)
def test_a_cell_that_starts_a_formula_is_quoted(text: str, safe: str) -> None:
    assert cell(text) == safe


def test_slices_cut_the_window_at_bucket_starts() -> None:
    start = datetime(2026, 11, 1, 0, tzinfo=UTC)
    end = datetime(2026, 11, 3, 6, tzinfo=UTC)
    hours = list(slices(Window(start, end, "hour", "UTC")))
    assert [(a.isoformat(), b.isoformat()) for a, b in hours] == [
        ("2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00"),
        ("2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00"),
        ("2026-11-03T00:00:00+00:00", "2026-11-03T06:00:00+00:00"),
    ]
    # Kolkata's days start at 18:30 UTC; the window's first (partial) day starts at its start
    days = list(slices(Window(start, end + (end - start) * 20, "day", "Asia/Kolkata")))
    assert days[0][0] == start
    assert days[1][0] == datetime(2026, 11, 24, 18, 30, tzinfo=UTC)
    assert days[-1][1] == end + (end - start) * 20
    assert all(a < b for a, b in days) and all(
        days[i][1] == days[i + 1][0] for i in range(len(days) - 1)
    )


@pytest.mark.parametrize(
    ("recipient", "safe"),
    [
        ("+919800000001", "+919800000001"),  # a phone number stays as the sender wrote it
        ("+91 98000 00001", "+91 98000 00001"),
        ("-42", "-42"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=x", "'\t=x"),
        ("\r=x", "'\r=x"),
        ("cust-42", "cust-42"),
        ("", ""),
    ],
)
def test_a_recipient_cell_quotes_formulas_but_not_phone_numbers(recipient: str, safe: str) -> None:
    assert spreadsheet_safe(recipient) == safe
