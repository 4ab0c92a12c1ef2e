"""CSV export of the reports, streamed from a Postgres cursor so that a long window never sits in
memory: one row per bucket, link and channel with clicks in the window, oldest first. The counts
mean what they mean in the JSON reports (`services.api.insights`): `unique_clicks` are the
distinct visitors of that link and channel in that bucket; taps after expiry and bots by reason
have their own columns.

The freshness of the export travels in headers (`X-Clicktrack-As-Of`, `X-Clicktrack-Lag`,
`X-Clicktrack-Lag-Records`), its window in `X-Clicktrack-Window`. Every cell is an id, a time, a
number or a name we validated (`[a-z0-9_]`), so no cell can start a spreadsheet formula.
"""

from __future__ import annotations

import csv
import io
import logging

from aiohttp import web

from services.api.context import END_OFFSETS, POOL, SETTINGS
from services.api.freshness import counter_lag
from services.api.insights import SCOPE_COLUMNS, SUMS, Tally
from services.api.reports import Subject, subject_of
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
"""Rows fetched from the cursor and written to the client at a time."""


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(r"/v1/links/{link_id:\d+}/report.csv", report_csv)
    router.add_get(r"/v1/campaigns/{campaign_id:\d+}/report.csv", report_csv)
    router.add_get("/v1/report.csv", report_csv)


async def report_csv(request: web.Request) -> web.StreamResponse:
    """The report of the link, the campaign or the organisation the path names, as CSV."""
    return await _stream(request, await subject_of(request))


_ROWS = """
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
ORDER BY b, link_id, channel
"""


async def _stream(request: web.Request, subject: Subject) -> web.StreamResponse:
    app, window = request.app, subject.window
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
    sql = _ROWS.format(column=SCOPE_COLUMNS[subject.scope], sums=SUMS)
    edges = window.edges()
    async with app[POOL].acquire() as conn, conn.transaction(readonly=True):
        cursor = conn.cursor(sql, subject.id, window.start, window.end, edges, prefetch=CHUNK_ROWS)
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        rows = 0
        async for r in cursor:
            start = window.local(edges[r[0] - 1]).isoformat()
            counts = Tally.of_sums(r[5:-1], r[-1]).as_dict()
            reasons = counts["bots_by_reason"]
            writer.writerow(
                (
                    start, r[1] or "", r[2] or "", r[3], r[4],
                    counts["total"], counts["unique"], counts["bots"], counts["after_expiry"],
                    *(reasons[kind] for kind in (*BOT_KINDS, "other")),
                )
            )  # fmt: skip
            rows += 1
            if rows % CHUNK_ROWS == 0:
                await response.write(out.getvalue().encode())
                out.seek(0)
                out.truncate()
        await response.write(out.getvalue().encode())
    await response.write_eof()
    return response
