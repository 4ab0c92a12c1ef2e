"""One operation of the API (`Op`: its route, handler, credential, bodies and answers) and the
pieces of OpenAPI its operation object is made of: the error answers every operation shares
and the query parameters several take. `services.api.operations` lists the operations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from services.api.bodies import Body
from services.api.body import MAX_PAGE
from services.api.errors import Handler

Schema = dict[str, Any]

ID: Schema = {"type": "integer", "minimum": 1}
ERRORS = {
    400: "The body is not a JSON object.",
    401: "No credential, or an unknown or revoked one.",
    403: "The credential may not do this.",
    404: "Not found (or another organisation's).",
    409: "Link tracking is off for the organisation (`tracking_disabled`): nothing is minted.",
    422: "A field breaks a rule; `error` names it.",
    429: "Too many requests from this caller (`rate_limited`); wait `Retry-After` seconds.",
    503: "Postgres is unreachable (`dependency_unavailable`); try again.",
}


def ref(name: str) -> Schema:
    """A reference to a schema of `components`."""
    return {"$ref": f"#/components/schemas/{name}"}


def answer(description: str, schema: str) -> Schema:
    """A response with a JSON body of the named schema."""
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def path_parameters(path: str) -> list[Schema]:
    """The parameters of the `{names}` in a path: ids, or a plain string."""
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": ID if name.endswith("_id") else {"type": "string"},
        }
        for name in re.findall(r"{(\w+)}", path)
    ]


@dataclass(frozen=True, slots=True)
class Op:
    """One documented operation; its `operationId` is its handler's name unless `name` says
    otherwise (one handler may serve a resource at several scopes)."""

    method: str
    path: str
    handler: Handler
    summary: str
    auth: str
    ok: tuple[int, type[msgspec.Struct] | str]
    """Success status and the type of its body (a description for a body that is not JSON)."""
    body: type[Body] | None = None
    """Type of the JSON body, if any (which adds the 400 and 422 answers)."""
    errors: tuple[int, ...] = (401, 403, 404)
    paged: bool = False
    """Takes `?after=&limit=`."""
    also: tuple[int, str, type[msgspec.Struct]] | None = None
    """Another success: (status, why, type)."""
    media: str = "application/json"
    """Media type of the success body (`text/csv`, `image/svg+xml`: no JSON schema)."""
    query: tuple[Schema, ...] = ()
    """Query parameters other than paging (the reports' window)."""
    name: str = ""
    """The `operationId`, when it is not the handler's name."""
    upload: str = ""
    """Description of a CSV body, for an operation that takes one (not JSON). Documented as
    `text/plain`: a CSV is any text, and the handler reads it whatever its Content-Type."""

    @property
    def route(self) -> str:
        """The path as the router matches it: an `{..._id}` matches digits only (a path id
        out of range is a 404, `services.api.body.path_id`)."""
        return re.sub(r"{(\w+_id)}", r"{\1:\\d+}", self.path)

    def operation(self) -> Schema:
        """The operation object of the document."""
        status, returns = self.ok
        responses: dict[str, Any] = {
            str(status): answer("OK", returns.__name__)
            if not isinstance(returns, str)
            else {"description": returns, "content": {self.media: {"schema": {"type": "string"}}}}
        }
        if self.also is not None:
            responses[str(self.also[0])] = answer(self.also[1], self.also[2].__name__)
        for code in ((400, 422) if self.body else ()) + self.errors + (429, 503):
            responses[str(code)] = answer(ERRORS[code], "Error")
        parameters = path_parameters(self.path) + (PAGE if self.paged else []) + [*self.query]
        operation: Schema = {
            "operationId": self.name or self.handler.__name__,
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
                "content": {"application/json": {"schema": ref(self.body.__name__)}},
            }
        elif self.upload:
            operation["requestBody"] = {
                "required": True,
                "description": self.upload,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        return operation


PAGE: list[Schema] = [
    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
    },
]
WINDOW: tuple[Schema, ...] = (
    {
        "name": "from",
        "in": "query",
        "description": "Date (midnight in tz) or RFC 3339 time; moved up to a quarter hour."
        " Default: 7 days before `to`.",
        "schema": {"type": "string"},
    },
    {
        "name": "to",
        "in": "query",
        "description": "Exclusive end, date or RFC 3339 time; moved up to a quarter hour."
        " Default: now.",
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
        "description": "IANA time zone of the hour and day buckets and the times shown."
        " Default: the organisation's.",
        "schema": {"type": "string"},
    },
)
TICKET: Schema = {
    "name": "ticket",
    "in": "query",
    "description": "The support ticket this answers; kept in the audit trail.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 100},
}
RECIPIENT_PAGE: tuple[Schema, ...] = (
    {
        "name": "after",
        "in": "query",
        "description": "The `next_after` of the previous page: its last recipient's pseudonym.",
        "schema": {"type": "string", "pattern": "^([0-9a-f]{32})?$"},
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
    },
)
