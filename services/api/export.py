"""CSV export of the reports, streamed page by page so that a long window never sits in memory:
one row per bucket, link and channel with clicks in the window, oldest first. The counts mean
what they mean in the JSON reports (`services.api.insights`): `unique_clicks` are the distinct
visitors of that link and channel in that bucket; taps after expiry and bots by reason have their
own columns.

Each page is one statement on a pooled connection (keyset pagination within a slice of the
window's buckets), and the connection goes back to the pool before the page is written: a client
that reads slowly holds no connection and no open transaction, so a dozen slow readers can
neither starve the pool of every organisation nor hold back vacuum. An organisation runs at most
`API_ORG_CONCURRENCY` exports and batch renders at once (`org_gate`).

The freshness of the export travels in headers (`X-Clicktrack-As-Of`, `X-Clicktrack-Lag`,
`X-Clicktrack-Lag-Records`), its window in `X-Clicktrack-Window`. Every cell is an id, a time, a
number or a name we validated (`[a-z0-9_]`); the names go through `cell` all the same, so that
no value, whatever wrote it, can start a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import datetime

from aiohttp import web

from services.api.auth import org_of
from services.api.context import END_OFFSETS, GATE, POOL, SETTINGS
from services.api.freshness import counter_lag
from services.api.insights import SCOPE_COLUMNS, SUMS, Tally
from services.api.reports import Subject, subject_of
from services.api.window import Window
from shared.events import BOT_KINDS

log = logging.getLogger(__name__)

HEADER = (
    "bucket_start",
    "campaign_id",
    "campaign_kind",
    "link_id",
    "channel",
    "total_clicks",
    "unique_clicks",
    "bot_clicks",
    "after_expiry",
    *(f"bots_{kind}" for kind in BOT_KINDS),
    "bots_other",
)
CHUNK_ROWS = 1000
"""Rows fetched by one statement and written to the client at a time."""
SLICE_BUCKETS = 24
"""Buckets one page's statement aggregates at most (a day of hours, or 24 days)."""


async def report_csv(request: web.Request) -> web.StreamResponse:
    """The report of the link, the campaign or the organisation the path names, as CSV."""
    return await _stream(request, await subject_of(request))


_PAGE = """
WITH counted AS (
    SELECT width_bucket(quarter, $4::timestamptz[]) AS b, campaign_id, campaign_kind, link_id,
           channel, {sums}
    FROM quarter_counters
    WHERE {column} = $1 AND quarter >= $2 AND quarter < $3
    GROUP BY 1, 2, 3, 4, 5
),
seen AS (
    SELECT width_bucket(quarter, $4::timestamptz[]) AS b, link_id, channel,
           count(DISTINCT visitor_id) AS n
    FROM quarter_visitors
    WHERE {column} = $1 AND quarter >= $2 AND quarter < $3
    GROUP BY 1, 2, 3
)
SELECT c.*, coalesce(s.n, 0) FROM counted c LEFT JOIN seen s USING (b, link_id, channel)
WHERE (c.b, c.link_id, c.channel, coalesce(c.campaign_id, 0), coalesce(c.campaign_kind, ''))
      > ($5, $6, $7, $8, $9)
ORDER BY c.b, c.link_id, c.channel, coalesce(c.campaign_id, 0), coalesce(c.campaign_kind, '')
LIMIT {limit}
"""
"""One page of the export: the rows after the last one written ($5..$9), of the buckets (`$4`,
all the window's edges) whose quarters are in [$2, $3)."""
_BEFORE_ALL = (0, 0, "", 0, "")


def slices(window: Window) -> Iterator[tuple[datetime, datetime]]:
    """The window cut at bucket edges into spans of at most `SLICE_BUCKETS` buckets, as
    [start, end) instants: a page's statement aggregates one span, never the whole window."""
    starts = [max(at, window.start) for at in window.edges()]
    for i in range(0, len(starts), SLICE_BUCKETS):
        end = starts[i + SLICE_BUCKETS] if i + SLICE_BUCKETS < len(starts) else window.end
        yield starts[i], end


async def _stream(request: web.Request, subject: Subject) -> web.StreamResponse:
    app, window = request.app, subject.window
    with app[GATE].enter(org_of(request)):
        name = f"{subject.scope}-{subject.id}"
        lag = await counter_lag(app[POOL], app[END_OFFSETS], app[SETTINGS])
        window_text = ";".join(f"{k}={v}" for k, v in window.as_dict().items())
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="clicktrack-{name}.csv"',
                "Cache-Control": "no-store",
                "X-Clicktrack-As-Of": subject.now.isoformat(),
                "X-Clicktrack-Lag": lag.status,
                "X-Clicktrack-Lag-Records": "" if lag.records is None else str(lag.records),
                "X-Clicktrack-Window": window_text,
            }
        )
        sql = _PAGE.format(column=SCOPE_COLUMNS[subject.scope], sums=SUMS, limit=CHUNK_ROWS)
        edges = window.edges()
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        for start, end in slices(window):
            after = _BEFORE_ALL
            while True:
                # One statement on a pooled connection, released before the client is written
                # to: a slow reader holds no connection and no transaction (no vacuum waits).
                rows = await app[POOL].fetch(sql, subject.id, start, end, edges, *after)
                for r in rows:
                    counts = Tally.of_sums(r[5:-1], r[-1]).as_dict()
                    reasons = counts["bots_by_reason"]
                    writer.writerow(
                        (
                            window.local(edges[r[0] - 1]).isoformat(), r[1] or "",
                            cell(r[2] or ""), r[3], cell(r[4]),
                            counts["total"], counts["unique"], counts["bots"],
                            counts["after_expiry"],
                            *(reasons[kind] for kind in (*BOT_KINDS, "other")),
                        )
                    )  # fmt: skip
                if out.tell():
                    await response.write(out.getvalue().encode())
                    out.seek(0)
                    out.truncate()
                if len(rows) < CHUNK_ROWS:
                    break
                last = rows[-1]
                after = (last[0], last[3], last[4], last[1] or 0, last[2] or "")
        await response.write_eof()
        return response


def cell(text: str) -> str:
    """`text` made safe for a spreadsheet: a cell starting with `=`, `+`, `-`, `@`, a tab or a
    carriage return is read as a formula by Excel and LibreOffice (OWASP's CSV injection), so it
    gets a leading `'`. Our own values never start so; a forged one must not run either."""
    if text and text[0] in _FORMULA_STARTS:
        return "'" + text
    return text


_FORMULA_STARTS = frozenset("=+-@\t\r")
