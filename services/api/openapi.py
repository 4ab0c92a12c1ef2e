"""The OpenAPI 3.1 document of the API, served at `/v1/openapi.json`.

Assembled from the operations (`services.api.operations`) and the schemas generated from the
body types (`services.api.bodies`, `.responses`, `.report_responses`), so the document says what
the handlers check. The tests hold every served route documented and every documented route
served, the components equal to what the types generate, and lint the document with Redocly
(`make openapi-lint`).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from services.api.bodies import REQUEST_BODIES
from services.api.op import ERRORS, Schema, answer, path_parameters
from services.api.operations import OPERATIONS
from services.api.responses import REFERENCED


def _named_by_operations() -> tuple[type[msgspec.Struct], ...]:
    """The body types the operations name (request, success, other success), each once."""
    named = (t for op in OPERATIONS for t in (op.body, op.ok[1], op.also and op.also[2]))
    return tuple(dict.fromkeys(t for t in named if isinstance(t, type)))


BODY_TYPES: tuple[type[msgspec.Struct], ...] = tuple(
    dict.fromkeys(REQUEST_BODIES + REFERENCED + _named_by_operations())
)
"""Every type whose schema is a component of the document (their parts are added with them)."""

# operationId, path, summary, and whether the rate limit applies (429).
_PLAIN = (
    ("healthz", "/healthz", "Alive", False),
    ("readyz", "/readyz", "Postgres reachable and the schema migrated (503 when not)", False),
    ("openapi", "/v1/openapi.json", "This document", True),
    ("dashboard", "/dashboard", "Dashboard: the campaign list (HTML; signs in with an API key)",
     True),
    ("dashboard_campaign", "/dashboard/campaigns/{campaign_id}", "Dashboard: one campaign (HTML)",
     True),
    ("dashboard_static", "/dashboard/static/{name}", "Dashboard script and style", True),
)  # fmt: skip


def schemas() -> dict[str, Schema]:
    """The `components/schemas` of the document: generated from the body types."""
    _, components = msgspec.json.schema_components(
        BODY_TYPES, ref_template="#/components/schemas/{name}"
    )
    return components


def _plain(operation_id: str, path: str, summary: str, limited: bool) -> Schema:
    """A public page: no credential, no JSON body of ours on success."""
    responses: dict[str, Any] = {"200": {"description": "OK"}}
    if path == "/readyz":
        responses["503"] = {"description": "Postgres unreachable or the schema not migrated."}
    if "{" in path:
        responses["404"] = answer("No such page or file.", "Error")
    if limited:
        responses["429"] = answer(ERRORS[429], "Error")
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "security": [],
        "responses": responses,
    }
    if "{" in path:
        operation["parameters"] = path_parameters(path)
    return operation


def document() -> Schema:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Schema]] = {
        path: {"get": _plain(operation_id, path, summary, limited)}
        for operation_id, path, summary, limited in _PLAIN
    }
    for op in OPERATIONS:
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
        "servers": [{"url": "/", "description": "The API that serves this document."}],
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": paths,
    }


if __name__ == "__main__":  # `python -m services.api.openapi`: the document without a server
    print(json.dumps(document(), indent=2))
