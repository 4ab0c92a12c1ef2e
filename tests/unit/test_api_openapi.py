"""The OpenAPI document matches the routes the API serves, both ways, and is valid OpenAPI 3."""

from __future__ import annotations

from dataclasses import replace

import pytest
from openapi_spec_validator import validate

from services.api.app import create_app
from services.api.openapi import document
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
    assert len(served) == 33


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


@pytest.mark.parametrize(
    ("domain", "code_length", "limit"),
    [("links.example-shop.co.in", 10, 30), ("s.ex.in", 20, 25)],
)
def test_the_api_refuses_settings_whose_short_links_cannot_fit_a_slot(
    domain: str, code_length: int, limit: int
) -> None:
    settings = replace(
        Settings(), short_domain=domain, code_length=code_length, dlt_var_limit=limit
    )
    with pytest.raises(SettingsError) as caught:
        create_app(settings)
    length = len(domain) + 1 + code_length
    assert str(caught.value).startswith(f"short links would take {length} characters")
    create_app(replace(settings, dlt_var_limit=length))  # exactly fitting is fine
