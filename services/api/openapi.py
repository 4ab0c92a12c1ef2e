"""The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.

Written by hand, next to the handlers, and checked by the tests both ways: every route the app
serves is documented here and everything documented here is served; the tests also validate the
responses they receive against the schemas below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shared.campaigns import CAMPAIGN_KINDS, CHANNEL_PATTERN, DEFAULT_CHANNEL

Schema = dict[str, Any]

_TIME: Schema = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
_ID: Schema = {"type": "integer", "minimum": 1}
_ID_OR_NULL: Schema = {"type": ["integer", "null"], "minimum": 1}
_KINDS = list(CAMPAIGN_KINDS)


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props}


def _closed(required: list[str], **props: Schema) -> Schema:
    return {**_obj(required, **props), "additionalProperties": False}


def ref(name: str) -> Schema:
    """A reference to a schema of `components`."""
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> Schema:
    return _obj(
        ["items", "next_after"],
        items={"type": "array", "items": ref(item)},
        next_after={
            **_ID_OR_NULL,
            "description": "Pass as `after` for the next page; null at end.",
        },
    )


_MEASURE: dict[str, Schema] = {
    "text": {"type": "string"},
    "encoding": {"type": "string", "enum": ["GSM-7", "UCS-2"]},
    "characters": {"type": "integer", "description": "Unicode code points."},
    "length": {"type": "integer", "description": "Septets (GSM-7) or UTF-16 code units (UCS-2)."},
    "segments": {"type": "integer", "description": "SMS parts: 160/153 GSM-7, 70/67 UCS-2."},
}

_KEY: dict[str, Schema] = {
    "id": _ID,
    "org_id": _ID,
    "name": {"type": "string"},
    "prefix": {"type": "string", "description": "First characters of the key."},
    "created_at": _TIME,
    "revoked_at": _TIME_OR_NULL,
}

_ORIGINAL = _closed(list(_MEASURE), **_MEASURE)
_CHANGE = _closed(
    ["characters", "units", "segments"],
    characters={"type": "integer"},
    units={"type": "integer", "description": "Each text counted in its own encoding's units."},
    segments={"type": "integer"},
)
_TRACKING = _closed(["enabled", "detail"], enabled={"type": "boolean"}, detail={"type": "string"})
_MESSAGE = _closed(
    ["values"],
    recipient={"type": ["string", "null"], "description": "Whose codes the links carry."},
    values={"type": "array", "items": {"type": "string"}, "maxItems": 100},
)

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        ["error", "detail"],
        error={"type": "string", "description": "Stable machine-readable code."},
        detail={"type": "string", "description": "What went wrong, for people."},
    ),
    "Org": _closed(
        ["id", "name", "link_tracking_enabled", "created_at", "tracking_changed_at"],
        id=_ID,
        name={"type": "string"},
        link_tracking_enabled={"type": "boolean"},
        created_at=_TIME,
        tracking_changed_at=_TIME_OR_NULL,
    ),
    "OrgCreate": _closed(["name"], name={"type": "string", "minLength": 1, "maxLength": 200}),
    "OrgPage": _page("Org"),
    "LinkTracking": _closed(["enabled"], enabled={"type": "boolean"}),
    "ApiKey": _closed(list(_KEY), **_KEY),
    "NewApiKey": _closed(
        [*_KEY, "key"],
        **_KEY,
        key={"type": "string", "description": "The key itself: shown this once only."},
    ),
    "ApiKeyCreate": _closed([], name={"type": "string", "minLength": 1, "maxLength": 200}),
    "ApiKeyList": _obj(["items"], items={"type": "array", "items": ref("ApiKey")}),
    "Campaign": _closed(
        ["id", "org_id", "name", "kind", "channel", "parent_id", "created_at"],
        id=_ID,
        org_id=_ID,
        name={"type": "string"},
        kind={"type": "string", "enum": _KINDS},
        channel={"type": "string"},
        parent_id=_ID_OR_NULL,
        created_at=_TIME,
    ),
    "CampaignCreate": _closed(
        ["name", "kind"],
        name={"type": "string", "minLength": 1, "maxLength": 200},
        kind={"type": "string", "enum": _KINDS},
        channel={"type": "string", "pattern": CHANNEL_PATTERN, "default": DEFAULT_CHANNEL},
        parent_id={**_ID, "description": "Resends and recurrences only; same organisation."},
    ),
    "CampaignPage": _page("Campaign"),
    "Link": _closed(
        [
            "id",
            "org_id",
            "campaign_id",
            "destination",
            "disabled",
            "expires_at",
            "fallback_url",
            "created_at",
        ],
        id=_ID,
        org_id=_ID,
        campaign_id=_ID_OR_NULL,
        destination={"type": "string", "description": "Normalised http(s) URL."},
        disabled={"type": "boolean"},
        expires_at=_TIME_OR_NULL,
        fallback_url={"type": ["string", "null"]},
        created_at=_TIME,
    ),
    "LinkCreate": _closed(
        ["destination"],
        destination={"type": "string", "maxLength": 2048},
        expires_at={**_TIME, "description": "RFC 3339 with a time zone, in the future."},
        fallback_url={"type": "string", "maxLength": 2048},
    ),
    "LinkChange": {
        **_closed(
            [],
            destination={"type": "string", "maxLength": 2048},
            disabled={"type": "boolean", "description": "true: every code of the link is 404."},
            expires_at={
                **_TIME_OR_NULL,
                "description": "RFC 3339 with a time zone, in the future; null removes it.",
            },
            fallback_url={
                "type": ["string", "null"],
                "maxLength": 2048,
                "description": "Where visitors go after expiry (else 410); null removes it.",
            },
        ),
        "minProperties": 1,
        "description": "The fields to change; the others keep their values.",
    },
    "LinkPage": _page("Link"),
    "Recipients": _closed(
        ["recipients"],
        recipients={
            "type": "array",
            "maxItems": 100_000,
            "items": {"type": ["string", "null"], "minLength": 1, "maxLength": 128},
            "description": "Recipient ids; null stands for the link's shared code.",
        },
    ),
    "Minted": _closed(
        ["link_id", "minted", "reused", "codes"],
        link_id=_ID,
        minted={"type": "integer", "description": "Codes created by this request."},
        reused={"type": "integer", "description": "Recipients that already had a code."},
        codes={
            "type": "array",
            "items": _closed(
                ["recipient", "code", "short_url"],
                recipient={"type": ["string", "null"]},
                code={"type": "string"},
                short_url={"type": "string"},
            ),
        },
    ),
    "RenderRequest": _closed(
        ["template"],
        template={"type": "string", "description": "DLT template with {#var#} slots."},
        values={"type": "array", "items": {"type": "string"}, "maxItems": 100, "default": []},
        campaign_id={**_ID, "description": "Required when values hold links to track."},
        recipient={"type": ["string", "null"], "description": "Whose code the links carry."},
        var_limit={**_ID, "description": "Characters per slot value; default DLT_VAR_LIMIT."},
    ),
    "RenderBatchRequest": _closed(
        ["template", "messages"],
        template={"type": "string", "description": "DLT template with {#var#} slots."},
        messages={"type": "array", "items": _MESSAGE, "maxItems": 10_000},
        campaign_id={**_ID, "description": "Required when values hold links to track."},
        var_limit={**_ID, "description": "Characters per slot value; default DLT_VAR_LIMIT."},
    ),
    "RenderedMessage": _closed(
        ["recipient", *_MEASURE, "original", "length_change"],
        recipient={"type": ["string", "null"]},
        **_MEASURE,
        original=_ORIGINAL,
        length_change=_CHANGE,
    ),
    "RenderBatch": _closed(
        ["tracking", "var_limit", "totals", "messages"],
        tracking=_TRACKING,
        var_limit={"type": "integer"},
        totals=_closed(
            ["messages", "rendered", "refused", "segments", "original_segments"],
            messages={"type": "integer"},
            rendered={"type": "integer"},
            refused={"type": "integer", "description": "Messages answered with an error."},
            segments={"type": "integer", "description": "SMS parts of all rendered messages."},
            original_segments={"type": "integer"},
        ),
        messages={
            "type": "array",
            "description": "One per message, in order: its rendering, or its error.",
            "items": {"oneOf": [ref("RenderedMessage"), ref("Error")]},
        },
    ),
    "Rendering": _closed(
        [*_MEASURE, "original", "length_change", "tracking", "var_limit", "values", "links"],
        **_MEASURE,
        original=_ORIGINAL,
        length_change=_CHANGE,
        tracking=_TRACKING,
        var_limit={"type": "integer"},
        values={"type": "array", "items": {"type": "string"}},
        links={
            "type": "array",
            "items": _closed(
                ["slot", "url", "short_url", "link_id", "code"],
                slot={"type": "integer"},
                url={"type": "string"},
                short_url={"type": ["string", "null"]},
                link_id=_ID_OR_NULL,
                code={"type": ["string", "null"]},
            ),
        },
    ),
}

_ERRORS = {
    400: "The body is not a JSON object.",
    401: "No credential, or an unknown or revoked one.",
    403: "The credential may not do this.",
    404: "Not found (or another organisation's).",
    422: "A field breaks a rule; `error` names it.",
    429: "Too many requests from this caller (`rate_limited`); wait `Retry-After` seconds.",
    503: "Postgres is unreachable (`dependency_unavailable`); try again.",
}


@dataclass(frozen=True, slots=True)
class Op:
    """One documented operation; path parameters are read from the path itself."""

    method: str
    path: str
    summary: str
    auth: str
    ok: tuple[int, str]
    """Success status and the schema of its body."""
    body: str | None = None
    """Schema of the JSON body, if any (which adds the 400 and 422 answers)."""
    errors: tuple[int, ...] = (401, 403, 404)
    paged: bool = False
    """Takes `?after=&limit=`."""
    also: tuple[int, str, str] | None = None
    """Another success: (status, why, schema)."""
    media: str = "application/json"
    """Media type of the success body (`text/csv`, `image/svg+xml`: no JSON schema)."""
    query: tuple[Schema, ...] = ()
    """Query parameters other than paging (the reports' window)."""

    def operation(self) -> Schema:
        responses: dict[str, Any] = {
            str(self.ok[0]): _answer("OK", self.ok[1])
            if self.media == "application/json"
            else {
                "description": self.ok[1],
                "content": {self.media: {"schema": {"type": "string"}}},
            }
        }
        if self.also is not None:
            responses[str(self.also[0])] = _answer(self.also[1], self.also[2])
        for code in ((400, 422) if self.body else ()) + self.errors + (429, 503):
            responses[str(code)] = _answer(_ERRORS[code], "Error")
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _ID}
            for name in re.findall(r"{(\w+)}", self.path)
        ]
        if self.paged:
            parameters += _PAGE
        parameters += self.query
        operation: Schema = {
            "summary": self.summary,
            "description": f"Credential: {self.auth}.",
            "security": [{"bearer": []}],
            "responses": responses,
        }
        if parameters:
            operation["parameters"] = parameters
        if self.body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(self.body)}},
            }
        return operation


def _answer(description: str, schema: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


_PAGE: list[Schema] = [
    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
]
OPERATOR, KEY, EITHER = "operator", "API key", "operator, or an API key of that organisation"
_NO_404 = (401, 403)
_CAMPAIGN_LINKS = "/v1/campaigns/{campaign_id}/links"
OPERATIONS = (
    Op("post", "/v1/orgs", "Create an organisation (tracking off)", OPERATOR, (201, "Org"),
       body="OrgCreate", errors=_NO_404),
    Op("get", "/v1/orgs", "List organisations", OPERATOR, (200, "OrgPage"),
       errors=(*_NO_404, 422), paged=True),
    Op("get", "/v1/orgs/{org_id}", "Read an organisation", EITHER, (200, "Org")),
    Op("put", "/v1/orgs/{org_id}/link-tracking", "Switch link tracking on or off", OPERATOR,
       (200, "Org"), body="LinkTracking"),
    Op("post", "/v1/orgs/{org_id}/api-keys", "Issue an API key (shown once)", OPERATOR,
       (201, "NewApiKey"), body="ApiKeyCreate"),
    Op("get", "/v1/api-keys", "List the organisation's keys", KEY, (200, "ApiKeyList"),
       errors=_NO_404),
    Op("post", "/v1/api-keys", "Create another key (shown once)", KEY, (201, "NewApiKey"),
       body="ApiKeyCreate", errors=_NO_404),
    Op("delete", "/v1/api-keys/{key_id}", "Revoke a key", KEY, (200, "ApiKey")),
    Op("post", "/v1/campaigns", "Create a campaign", KEY, (201, "Campaign"),
       body="CampaignCreate", errors=_NO_404),
    Op("get", "/v1/campaigns", "List campaigns", KEY, (200, "CampaignPage"),
       errors=(*_NO_404, 422), paged=True),
    Op("get", "/v1/campaigns/{campaign_id}", "Read a campaign", KEY, (200, "Campaign")),
    Op("post", _CAMPAIGN_LINKS, "Add a link", KEY, (201, "Link"), body="LinkCreate",
       also=(200, "A resend reuses the link of the campaign it resends", "Link")),
    Op("get", _CAMPAIGN_LINKS, "List a campaign's links", KEY, (200, "LinkPage"),
       errors=(401, 403, 404, 422), paged=True),
    Op("get", "/v1/links/{link_id}", "Read a link", KEY, (200, "Link")),
    Op("patch", "/v1/links/{link_id}", "Change a link (destination, disabled, expiry)", KEY,
       (200, "Link"), body="LinkChange"),
    Op("post", "/v1/links/{link_id}/recipients", "Mint one code per recipient (bulk)", KEY,
       (200, "Minted"), body="Recipients"),
    Op("post", "/v1/render", "Render a DLT template for a recipient", KEY, (200, "Rendering"),
       body="RenderRequest"),
    Op("post", "/v1/render/batch", "Render a template for up to 10,000 recipients", KEY,
       (200, "RenderBatch"), body="RenderBatchRequest"),
)  # fmt: skip
"""Every operation under /v1/ but the document itself."""

_PLAIN = {
    "/healthz": "Alive",
    "/readyz": "Postgres reachable and the schema migrated (503 when not)",
    "/metrics": "Prometheus metrics",
    "/v1/openapi.json": "This document",
}


_REQUEST_BODIES = frozenset(op.body for op in OPERATIONS if op.body)


def _nullable_optionals(schema: Schema) -> Schema:
    """A request body whose optional fields also take null: the API reads null as "not given"
    (services/api/body.py), and the document must say what the API accepts."""
    required = set(schema.get("required", ()))
    properties = {
        name: prop if name in required else {"anyOf": [prop, {"type": "null"}]}
        for name, prop in schema.get("properties", {}).items()
    }
    return {**schema, "properties": properties}


_PAGES = {
    "/dashboard": "Dashboard: the campaign list (HTML; signs in with an API key)",
    "/dashboard/campaigns/{campaign_id}": "Dashboard: one campaign (HTML)",
    "/dashboard/static/{name}": "Dashboard script and style",
}


def _plain(summary: str, path: str) -> Schema:
    operation: Schema = {
        "summary": summary,
        "security": [],
        "responses": {"200": {"description": "OK"}},
    }
    names = re.findall(r"{(\w+)}", path)
    if names:
        operation["responses"]["404"] = {"description": "No such page or file."}
        operation["parameters"] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _ID if name.endswith("_id") else {"type": "string"},
            }
            for name in names
        ]
    return operation


def document() -> Schema:
    """The whole OpenAPI document."""
    # The reports' operations live next to them and build on this module's helpers.
    from services.api.openapi_reports import REPORT_OPERATIONS, REPORT_SCHEMAS

    paths: dict[str, dict[str, Schema]] = {
        path: {"get": _plain(summary, path)} for path, summary in {**_PLAIN, **_PAGES}.items()
    }
    for op in (*OPERATIONS, *REPORT_OPERATIONS):
        paths.setdefault(op.path, {})[op.method] = op.operation()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clicktrack links API",
            "version": "1",
            "description": "Organisations, campaigns, tracked links, bulk short codes,"
            " DLT-safe SMS rendering, click reports (JSON, CSV, SVG) and the dashboard."
            ' Errors are `{"error": code, "detail": message}`.',
        },
        "components": {
            "schemas": {
                name: _nullable_optionals(schema) if name in _REQUEST_BODIES else schema
                for name, schema in {**SCHEMAS, **REPORT_SCHEMAS}.items()
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }
