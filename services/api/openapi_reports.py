"""The reports' part of the OpenAPI document (`services.api.openapi`): their schemas and
operations (JSON reports, CSV exports, SVG charts) and the window's query parameters."""

from __future__ import annotations

from services.api.openapi import _ID as ID
from services.api.openapi import _KINDS, _NO_404, _TIME, _TIME_OR_NULL, KEY, Op, Schema, ref
from services.api.openapi import _closed as closed

_COUNT: Schema = {"type": "integer", "minimum": 0}
_TEXT: Schema = {"type": "string"}
_COUNTS = closed(
    ["total", "unique", "bots"],
    total={**_COUNT, "description": "Human clicks."},
    unique={
        **_COUNT,
        "description": "Live totals: distinct human visitors. Windows, series and breakdowns:"
        " visitors a link met for the first time there (summed over links).",
    },
    bots={**_COUNT, "description": "Link previews and scanners, never in total or unique."},
)
_SOURCE: Schema = {
    "type": "string",
    "enum": ["redis", "postgres"],
    "description": "Where the live totals were read (Postgres when Redis cannot answer).",
}
_REPORT: dict[str, Schema] = {
    "as_of": {**_TIME, "description": "When the report's reads began (UTC)."},
    "lag": closed(
        ["status", "records", "last_counted_at"],
        status={
            "type": "string",
            "enum": ["current", "behind", "unknown"],
            "description": "current: every published click is counted; unknown: Kafka did not"
            " answer within 1 s.",
        },
        records={"type": ["integer", "null"], "description": "Clicks published, not yet counted."},
        last_counted_at=_TIME_OR_NULL,
    ),
    "window": closed(
        ["from", "to", "bucket", "tz"],
        **{
            "from": {**_TIME, "description": "First hour in the window (in tz)."},
            "to": {**_TIME, "description": "End of the window, exclusive (in tz)."},
        },
        bucket={"type": "string", "enum": ["hour", "day"]},
        tz={"type": "string"},
    ),
    "totals": {**_COUNTS, "description": "All time, live."},
    "in_window": _COUNTS,
    "series": {
        "type": "array",
        "description": "Every bucket of the window in order, empty ones as zeros.",
        "items": closed(
            ["start", "total", "unique", "bots"],
            start={**_TIME, "description": "Bucket start, in tz."},
            total=_COUNT,
            unique=_COUNT,
            bots=_COUNT,
        ),
    },
}


def _grouped(name: str, schema: Schema) -> Schema:
    return {
        "type": "array",
        "items": closed(
            [name, "total", "unique", "bots"], **{name: schema}, **_COUNTS["properties"]
        ),
    }


REPORT_SCHEMAS: dict[str, Schema] = {
    "LinkReport": closed(
        [*_REPORT, "link", "totals_source", "by_channel"],
        **_REPORT,
        link=ref("Link"),
        totals_source=_SOURCE,
        by_channel=_grouped("channel", {"type": "string"}),
    ),
    "CampaignReport": closed(
        [*_REPORT, "campaign", "totals_source", "by_channel", "by_link", "family"],
        **_REPORT,
        campaign=ref("Campaign"),
        totals_source=_SOURCE,
        by_channel=_grouped("channel", {"type": "string"}),
        by_link={
            "type": "array",
            "description": "The campaign's links (up to 1,000): window counts, then all-time.",
            "items": closed(
                ["link_id", "destination", "total", "unique", "bots", "totals"],
                link_id=ID,
                destination={"type": "string"},
                **_COUNTS["properties"],
                totals=_COUNTS,
            ),
        },
        family={
            "type": "array",
            "description": "The original campaign, its resends and recurrences, oldest first.",
            "items": closed(
                ["campaign", "totals", "in_window", "first_24h"],
                campaign=ref("Campaign"),
                totals=_COUNTS,
                in_window=_COUNTS,
                first_24h={
                    **_COUNTS,
                    "description": "The 24 UTC hours from the hour the campaign was created: the"
                    " same stretch after each send.",
                },
            ),
        },
    ),
    "OrgReport": closed(
        [
            *_REPORT,
            "org_id",
            "by_channel",
            "by_kind",
            "campaigns",
            "campaigns_source",
            "campaigns_truncated",
        ],
        **_REPORT,
        org_id=ID,
        by_channel=_grouped("channel", {"type": "string"}),
        by_kind=_grouped("kind", {"type": "string", "enum": [*_KINDS, "none"]}),
        campaigns={
            "type": "array",
            "description": "The newest 500 campaigns with their live all-time totals.",
            "items": closed(["campaign", "totals"], campaign=ref("Campaign"), totals=_COUNTS),
        },
        campaigns_source=_SOURCE,
        campaigns_truncated={"type": "boolean"},
    ),
}

WINDOW: tuple[Schema, ...] = (
    {
        "name": "from",
        "in": "query",
        "description": "Date (midnight in tz) or RFC 3339 time; floored to the hour."
        " Default: 7 days before `to`.",
        "schema": {"type": "string"},
    },
    {
        "name": "to",
        "in": "query",
        "description": "Exclusive end, date or RFC 3339 time; ceiled to the hour. Default: now.",
        "schema": {"type": "string"},
    },
    {
        "name": "bucket",
        "in": "query",
        "description": "Default: hour for windows up to 7 days, else day (at most 92 days of"
        " hours).",
        "schema": {"type": "string", "enum": ["hour", "day"]},
    },
    {
        "name": "tz",
        "in": "query",
        "description": "IANA time zone of the day buckets and the times shown.",
        "schema": {"type": "string", "default": "UTC"},
    },
)
_REPORT_ERRORS = (401, 403, 404, 422)
_CSV = (
    "One row per bucket, link and channel with clicks: bucket_start, campaign_id, campaign_kind,"
    " link_id, channel, total_clicks, unique_clicks, bot_clicks. Freshness in the headers"
    " X-Clicktrack-As-Of, X-Clicktrack-Lag, X-Clicktrack-Lag-Records."
)

REPORT_OPERATIONS = (
    Op("get", "/v1/links/{link_id}/report", "Report of a link", KEY, (200, "LinkReport"),
       errors=_REPORT_ERRORS, query=WINDOW),
    Op("get", "/v1/campaigns/{campaign_id}/report", "Report of a campaign and its family", KEY,
       (200, "CampaignReport"), errors=_REPORT_ERRORS, query=WINDOW),
    Op("get", "/v1/report", "Report of the organisation", KEY, (200, "OrgReport"),
       errors=(*_NO_404, 422), query=WINDOW),
    Op("get", "/v1/links/{link_id}/report.csv", "A link's report as CSV (streamed)", KEY,
       (200, _CSV), errors=_REPORT_ERRORS, query=WINDOW, media="text/csv"),
    Op("get", "/v1/campaigns/{campaign_id}/report.csv", "A campaign's report as CSV (streamed)",
       KEY, (200, _CSV), errors=_REPORT_ERRORS, query=WINDOW, media="text/csv"),
    Op("get", "/v1/report.csv", "The organisation's report as CSV (streamed)", KEY, (200, _CSV),
       errors=(*_NO_404, 422), query=WINDOW, media="text/csv"),
    Op("get", "/v1/campaigns/{campaign_id}/chart.svg", "A campaign's clicks over time (SVG)", KEY,
       (200, "Line chart of total, unique and bot clicks"), errors=_REPORT_ERRORS, query=WINDOW,
       media="image/svg+xml"),
    Op("get", "/v1/chart.svg", "The organisation's clicks over time (SVG)", KEY,
       (200, "Line chart of total, unique and bot clicks"), errors=(*_NO_404, 422),
       query=WINDOW, media="image/svg+xml"),
)  # fmt: skip
