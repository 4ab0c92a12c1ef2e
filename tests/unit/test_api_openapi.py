"""The OpenAPI document matches the routes the API serves, both ways, is valid OpenAPI 3, and
its body schemas are those of the types the handlers decode with."""

from __future__ import annotations

import inspect
import re

import msgspec
import pytest
from openapi_spec_validator import validate

from services.api import bodies, render
from services.api.app import create_app
from services.api.openapi import BODY_TYPES, document
from services.api.operations import OPERATIONS
from shared.errors import SettingsError
from shared.settings import Settings


def served_routes() -> set[tuple[str, str]]:
    app = create_app(Settings())
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds HEAD to every GET
            continue
        assert route.resource is not None
        routes.add((route.method.lower(), route.resource.canonical))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, item in document()["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_route_is_served() -> None:
    served, documented = served_routes(), documented_routes()
    assert served - documented == set(), "served but not in /v1/openapi.json"
    assert documented - served == set(), "documented but not served"
    assert len(served) == 59


def test_the_document_is_valid_openapi_3() -> None:
    validate(document())  # raises on any error
    assert document()["openapi"] == "3.1.0"


def test_every_api_route_is_versioned_and_documents_its_errors() -> None:
    for method, path in documented_routes():
        if path in ("/healthz", "/readyz", "/metrics") or path.startswith("/dashboard"):
            continue
        assert path.startswith("/v1/"), path
        if path == "/v1/openapi.json":
            continue
        responses = document()["paths"][path][method]["responses"]
        assert "401" in responses, (method, path)
        for status, answer in responses.items():
            if int(status) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_each_operation_is_its_routes_handler_and_named_once() -> None:
    handlers = {
        (route.method.lower(), route.resource.canonical): route.handler
        for route in create_app(Settings()).router.routes()
        if route.resource is not None
    }
    ids = [op["operationId"] for item in document()["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == 59
    for op in OPERATIONS:
        assert op.handler is handlers[(op.method, op.path)], (op.method, op.path)


def test_each_documented_request_body_is_the_type_its_handler_decodes() -> None:
    for op in OPERATIONS:
        decoded = re.findall(r"\bdecode\(request, (\w+)\)", inspect.getsource(op.handler))
        assert decoded == ([op.body.__name__] if op.body else []), op.handler.__name__
    # A batch's messages are decoded one by one, as the schema of their items says.
    assert "decode_item(item, bodies.Message," in inspect.getsource(render.render_batch)
    messages = document()["components"]["schemas"]["RenderBatchRequest"]["properties"]["messages"]
    assert messages["items"] == {"$ref": "#/components/schemas/Message"}


def test_the_document_holds_exactly_the_schemas_the_types_generate() -> None:
    """The document's components are generated, not written: what the handlers decode with
    (and the bodies they answer with) is what the document says, field for field."""
    _, generated = msgspec.json.schema_components(
        BODY_TYPES, ref_template="#/components/schemas/{name}"
    )
    assert document()["components"]["schemas"] == generated
    for body in bodies.REQUEST_BODIES:
        schema = generated[body.__name__]
        assert schema["additionalProperties"] is False, body.__name__
        fields = {f.encode_name for f in msgspec.structs.fields(body)}
        assert set(schema["properties"]) == fields, body.__name__
    referenced = set(re.findall(r"#/components/schemas/(\w+)", str(document()["paths"])))
    request_bodies = {op.body.__name__ for op in OPERATIONS if op.body}
    assert request_bodies | {"Message"} == {b.__name__ for b in bodies.REQUEST_BODIES}
    assert request_bodies <= referenced


@pytest.mark.parametrize(
    ("domain", "code_length", "limit"),
    [("links.example-shop.co.in", 10, 30), ("s.ex.in", 20, 25)],
)
def test_the_api_refuses_settings_whose_short_links_cannot_fit_a_slot(
    domain: str, code_length: int, limit: int
) -> None:
    settings = Settings().changed(SHORT_DOMAIN=domain, CODE_LENGTH=code_length, DLT_VAR_LIMIT=limit)
    with pytest.raises(SettingsError) as caught:
        create_app(settings)
    length = len(domain) + 1 + code_length
    assert str(caught.value).startswith(f"short links would take {length} characters")
    create_app(settings.changed(DLT_VAR_LIMIT=length))  # exactly fitting is fine
