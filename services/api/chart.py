"""Clicks over time as an SVG line chart, drawn on the server (no chart library, no build step,
nothing fetched from elsewhere): human clicks, unique visitors and bot hits per bucket.

`GET /v1/campaigns/{id}/chart.svg` and `GET /v1/chart.svg` (the organisation) take the window
parameters of the reports. The dashboard fetches the SVG with its API key and shows it inline.
"""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from services.api.auth import one_turn
from services.api.context import POOL, UNIQUES
from services.api.insights import Tally, window_counts
from services.api.reports import subject_of
from services.api.window import Window

WIDTH, HEIGHT = 760, 280
"""Size of the chart, SVG user units (pixels when shown at 1:1)."""
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 44
"""Margins around the plot area, for the axes' labels and the legend."""
LINES = (("total", "#1f6feb", "Total clicks", ""), ("unique", "#2da44e", "Unique clicks", ""))
BOTS = ("bots", "#8c959f", "Bot clicks", "4 3")


@one_turn
async def chart(request: web.Request) -> web.Response:
    """The clicks of the campaign or the organisation the path names, over the window, as SVG."""
    subject = await subject_of(request)
    counted = await window_counts(
        request.app[POOL], subject.scope, subject.id, subject.window, cache=request.app[UNIQUES]
    )
    rows = counted.series
    title = f"Clicks of {'campaign ' if subject.scope == 'campaign' else ''}{subject.label}"
    return _svg_response(render(rows, subject.window, title))


def _svg_response(svg: str) -> web.Response:
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 times a power of ten that is at least `value` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def render(rows: list[tuple[datetime, Tally]], window: Window, title: str) -> str:
    """The SVG text of the series `rows` (one point per bucket, in order)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((max(t.total, t.unique, t.bots) for _, t in rows), default=0))
    count = len(rows)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label={quoteattr(title)}'
        f' data-buckets="{count}" data-max="{top}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    for frac in (0, 0.5, 1):
        value = top * frac
        gy = TOP + plot_h - plot_h * frac
        parts.append(
            f'<line x1="{LEFT}" y1="{gy:.1f}" x2="{WIDTH - RIGHT}" y2="{gy:.1f}"'
            ' stroke="#d0d7de" stroke-width="1"/>'
            f'<text x="{LEFT - 6}" y="{gy + 4:.1f}" text-anchor="end" font-size="11"'
            f' font-family="sans-serif" fill="#57606a">{value:g}</text>'
        )
    fmt = "%d %b %H:%M" if window.bucket == "hour" else "%d %b %Y"
    for i in sorted({0, count // 2, count - 1}) if count else ():
        label = window.local(rows[i][0]).strftime(fmt)
        anchor = "start" if i == 0 and count > 1 else "end" if i == count - 1 > 0 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="{anchor}" font-size="11"'
            f' font-family="sans-serif" fill="#57606a">{escape(label)}</text>'
        )
    for field, colour, _label, dash in (*LINES, BOTS):
        points = " ".join(f"{x(i):.1f},{y(getattr(t, field)):.1f}" for i, (_, t) in enumerate(rows))
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<polyline class="series-{field}" data-sum="{sum(getattr(t, field) for _, t in rows)}"'
            f' fill="none" stroke="{colour}" stroke-width="2"{dashed} points="{points}"/>'
        )
    for n, (_field, colour, label, dash) in enumerate((*LINES, BOTS)):
        lx = LEFT + n * 140
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line x1="{lx}" y1="14" x2="{lx + 18}" y2="14" stroke="{colour}" stroke-width="3"'
            f"{dashed}/>"
            f'<text x="{lx + 24}" y="18" font-size="12" font-family="sans-serif"'
            f' fill="#24292f">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" font-size="11"'
        f' font-family="sans-serif" fill="#57606a">{escape(window.bucket)} buckets,'
        f" {escape(window.tz)}</text></svg>"
    )
    return "".join(parts)
