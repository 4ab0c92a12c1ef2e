"""The SVG chart: one point per bucket, scaled to a round maximum, text escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

from services.api.chart import HEIGHT, nice_ceiling, render
from services.api.insights import Tally
from services.api.window import Window

START = datetime(2026, 11, 26, 0, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(hours=4), "hour", "Asia/Kolkata")
SVG = "{http://www.w3.org/2000/svg}"


def test_round_maximums() -> None:
    assert [nice_ceiling(v) for v in (0, 1, 2, 3, 6, 11, 250, 100_001)] == [
        1, 1, 2, 5, 10, 20, 500, 200_000,
    ]  # fmt: skip


def test_each_series_has_a_point_per_bucket_scaled_to_the_maximum() -> None:
    rows = [(START + timedelta(hours=i), Tally(t, u, b)) for i, (t, u, b) in enumerate(
        [(0, 0, 0), (4, 3, 1), (10, 6, 0), (1, 1, 2)]
    )]  # fmt: skip
    svg = render(rows, WINDOW, "Clicks of <Diwali> & co")
    root = ElementTree.fromstring(svg)  # well-formed XML
    assert root.get("data-buckets") == "4" and root.get("data-max") == "10"
    lines = {p.get("class"): p for p in root.iter(f"{SVG}polyline")}
    assert set(lines) == {"series-total", "series-unique", "series-bots"}
    totals = [
        tuple(map(float, pt.split(","))) for pt in lines["series-total"].get("points", "").split()
    ]
    assert len(totals) == 4
    ys = [y for _, y in totals]
    bottom, top = ys[0], ys[2]  # 0 clicks and the maximum (10)
    assert bottom > top and abs(ys[1] - (bottom - (bottom - top) * 0.4)) < 0.1
    assert lines["series-bots"].get("data-sum") == "3"
    assert root.find(f"{SVG}title").text == "Clicks of <Diwali> & co"  # escaped, then read back
    assert "<Diwali>" not in svg
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "26 Nov 05:30" in labels and "26 Nov 08:30" in labels  # UTC hours shown in India


def test_an_empty_window_still_draws_axes() -> None:
    svg = render([], WINDOW, "nothing")
    assert 'data-buckets="0"' in svg and f'viewBox="0 0 760 {HEIGHT}"' in svg
    assert re.search(r'points=""', svg)
