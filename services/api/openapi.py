"""The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.

Written by hand, next to the handlers, and checked by the tests both ways: every route the app
serves is documented here and everything documented here is served; the tests also validate the
responses they receive against the schemas below.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_TIME: Schema = {"type": "string", "format": "date-time"}
_TIME_OR_NULL: Schema = {"type": ["string", "null"], "format": "date-time"}
_ID: Schema = {"type": "integer", "minimum": 1}
_ID_OR_NULL: Schema = {"type": ["integer", "null"], "minimum": 1}
_KINDS = ["one_time", "recurring", "coupon_expiry_reminder", "resend"]


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
        channel={"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$", "default": "sms"},
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
}


def _op(
    summary: str,
    *,
    auth: str,
    ok: tuple[int, str | None],
    body: str | None = None,
    errors: tuple[int, ...] = (401, 403, 404),
    params: tuple[str, ...] = (),
    paged: bool = False,
    also: tuple[int, str, str] | None = None,
) -> Schema:
    status, schema = ok
    content = {"application/json": {"schema": ref(schema)}} if schema else None
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": content}}
    if content is None:
        responses[str(status)] = {"description": "OK"}
    if also is not None:
        other, why, other_schema = also
        responses[str(other)] = {
            "description": why,
            "content": {"application/json": {"schema": ref(other_schema)}},
        }
    for code in (400, 422) if body else ():
        responses[str(code)] = _error(code)
    for code in errors:
        responses[str(code)] = _error(code)
    operation: Schema = {
        "summary": summary,
        "security": [{"bearer": []}],
        "description": f"Credential: {auth}.",
        "responses": responses,
    }
    parameters = [{"name": p, "in": "path", "required": True, "schema": _ID} for p in params]
    if paged:
        parameters += [
            {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
        ]
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return operation


def _error(code: int) -> Schema:
    return {
        "description": _ERRORS[code],
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _plain(summary: str) -> Schema:
    return {"summary": summary, "security": [], "responses": {"200": {"description": "OK"}}}


OPERATOR, KEY, EITHER = "operator", "API key", "operator, or an API key of that organisation"


def document() -> Schema:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clicktrack links API",
            "version": "1",
            "description": "Organisations, campaigns, tracked links, bulk short codes and"
            ' DLT-safe SMS rendering. Errors are `{"error": code, "detail": message}`.',
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/healthz": {"get": _plain("Alive")},
            "/readyz": {"get": _plain("Postgres reachable (503 when not)")},
            "/metrics": {"get": _plain("Prometheus metrics")},
            "/v1/openapi.json": {"get": _plain("This document")},
            "/v1/orgs": {
                "post": _op(
                    "Create an organisation (tracking off)",
                    auth=OPERATOR,
                    ok=(201, "Org"),
                    body="OrgCreate",
                    errors=(401, 403),
                ),
                "get": _op(
                    "List organisations",
                    auth=OPERATOR,
                    ok=(200, "OrgPage"),
                    errors=(401, 403, 422),
                    paged=True,
                ),
            },
            "/v1/orgs/{org_id}": {
                "get": _op("Read an organisation", auth=EITHER, ok=(200, "Org"), params=("org_id",))
            },
            "/v1/orgs/{org_id}/link-tracking": {
                "put": _op(
                    "Switch link tracking on or off",
                    auth=OPERATOR,
                    ok=(200, "Org"),
                    body="LinkTracking",
                    params=("org_id",),
                )
            },
            "/v1/orgs/{org_id}/api-keys": {
                "post": _op(
                    "Issue an API key for an organisation (shown once)",
                    auth=OPERATOR,
                    ok=(201, "NewApiKey"),
                    body="ApiKeyCreate",
                    params=("org_id",),
                )
            },
            "/v1/api-keys": {
                "get": _op(
                    "List the organisation's keys",
                    auth=KEY,
                    ok=(200, "ApiKeyList"),
                    errors=(401, 403),
                ),
                "post": _op(
                    "Create another key (shown once)",
                    auth=KEY,
                    ok=(201, "NewApiKey"),
                    body="ApiKeyCreate",
                    errors=(401, 403),
                ),
            },
            "/v1/api-keys/{key_id}": {
                "delete": _op("Revoke a key", auth=KEY, ok=(200, "ApiKey"), params=("key_id",))
            },
            "/v1/campaigns": {
                "post": _op(
                    "Create a campaign",
                    auth=KEY,
                    ok=(201, "Campaign"),
                    body="CampaignCreate",
                    errors=(401, 403),
                ),
                "get": _op(
                    "List campaigns",
                    auth=KEY,
                    ok=(200, "CampaignPage"),
                    errors=(401, 403, 422),
                    paged=True,
                ),
            },
            "/v1/campaigns/{campaign_id}": {
                "get": _op(
                    "Read a campaign", auth=KEY, ok=(200, "Campaign"), params=("campaign_id",)
                )
            },
            "/v1/campaigns/{campaign_id}/links": {
                "post": _op(
                    "Add a link (200 when a resend reuses its parent's link)",
                    auth=KEY,
                    ok=(201, "Link"),
                    also=(200, "A resend reuses the link of the campaign it resends", "Link"),
                    body="LinkCreate",
                    params=("campaign_id",),
                ),
                "get": _op(
                    "List a campaign's links",
                    auth=KEY,
                    ok=(200, "LinkPage"),
                    params=("campaign_id",),
                    errors=(401, 403, 404, 422),
                    paged=True,
                ),
            },
            "/v1/links/{link_id}": {
                "get": _op("Read a link", auth=KEY, ok=(200, "Link"), params=("link_id",))
            },
            "/v1/links/{link_id}/recipients": {
                "post": _op(
                    "Mint one short code per recipient (bulk; existing codes are kept)",
                    auth=KEY,
                    ok=(200, "Minted"),
                    body="Recipients",
                    params=("link_id",),
                )
            },
            "/v1/render": {
                "post": _op(
                    "Render a DLT template for a recipient, with tracked short links",
                    auth=KEY,
                    ok=(200, "Rendering"),
                    body="RenderRequest",
                )
            },
            "/v1/render/batch": {
                "post": _op(
                    "Render a template for up to 10,000 recipients, minting codes in bulk",
                    auth=KEY,
                    ok=(200, "RenderBatch"),
                    body="RenderBatchRequest",
                )
            },
        },
    }
