"""CSV export of the reports, streamed from a Postgres cursor so that a long window never sits in
memory: one row per bucket, link and channel with clicks in the window, oldest first.

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
from services.api.insights import SCOPE_COLUMNS
from services.api.reports import Subject, subject_of

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
SELECT CASE WHEN $4 = 'hour' THEN hour
            ELSE date_trunc('day', hour AT TIME ZONE $5) AT TIME ZONE $5 END AS b,
       campaign_id, campaign_kind, link_id, channel,
       sum(total_clicks)::bigint, sum(unique_clicks)::bigint, sum(bot_clicks)::bigint
FROM hourly_counters
WHERE {column} = $1 AND hour >= $2 AND hour < $3
GROUP BY b, campaign_id, campaign_kind, link_id, channel
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
    sql = _ROWS.format(column=SCOPE_COLUMNS[subject.scope])
    async with app[POOL].acquire() as conn, conn.transaction(readonly=True):
        cursor = conn.cursor(
            sql, subject.id, window.start, window.end, window.bucket, window.tz, prefetch=CHUNK_ROWS
        )
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADER)
        rows = 0
        async for r in cursor:
            start, campaign_id, kind = window.local(r[0]).isoformat(), r[1] or "", r[2] or ""
            writer.writerow((start, campaign_id, kind, r[3], r[4], r[5], r[6], r[7]))
            rows += 1
            if rows % CHUNK_ROWS == 0:
                await response.write(out.getvalue().encode())
                out.seek(0)
                out.truncate()
        await response.write(out.getvalue().encode())
    await response.write_eof()
    return response
