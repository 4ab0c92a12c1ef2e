"""Every documented API route refuses a missing, wrong or revoked key, and another
organisation's key never reaches this organisation's campaigns, links or keys."""

from __future__ import annotations

import pytest

from services.api.openapi import document
from tests.integration.api_client import ApiClient

pytestmark = pytest.mark.integration

# Every documented operation that takes a credential (the reports included); only the health
# pages, the OpenAPI document and the dashboard's static pages are public.
ROUTES = [
    (method.upper(), path)
    for path, operations in document()["paths"].items()
    for method, operation in operations.items()
    if operation.get("security") != []
]
OPERATOR_ROUTES = {
    (method.upper(), path)
    for path, operations in document()["paths"].items()
    for method, operation in operations.items()
    if operation.get("description") == "Credential: operator."
}


async def ids_of_org_a(api: ApiClient) -> tuple[dict[str, int | str], str, str]:
    """Ids of org A's things, a key of A that is revoked, and a live key of org B."""
    org_a, key_a = await api.new_org("A", tracking=True)
    campaign = await api.new_campaign(key_a)
    link_id = await api.new_link(key_a, campaign, "https://a.example/x")
    spare = await api.call("POST", "/v1/api-keys", auth=key_a, json={"name": "spare"}, expect=201)
    await api.call("DELETE", "/v1/api-keys/{key_id}", auth=key_a, key_id=spare["id"])
    _, key_b = await api.new_org("B", tracking=True)
    ids = {
        "org_id": org_a,
        "campaign_id": campaign,
        "link_id": link_id,
        "key_id": spare["id"],
        "domain": "s.a.example.in",
        "entry_id": 1,
    }
    return ids, spare["key"], key_b


# A valid body where the route takes one, so that only ownership can refuse the request.
BODIES: dict[str, object] = {
    "/v1/links/{link_id}/recipients": {"recipients": ["cust-1"]},
    "/v1/campaigns/{campaign_id}/links": {"destination": "https://b.example/"},
    "/v1/links/{link_id}": {"disabled": True},  # PATCH; GET ignores a body
}


async def status_of(
    api: ApiClient, method: str, path: str, token: str | None, body: object = None
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with api.http.request(method, path, json=body or {}, headers=headers) as resp:
        return resp.status


@pytest.mark.parametrize(("method", "route"), ROUTES)
async def test_every_route_refuses_strangers(api: ApiClient, method: str, route: str) -> None:
    ids, revoked, key_b = await ids_of_org_a(api)
    path = route.format(**ids, recipient="cust-1")  # of org A's, as ids are
    assert await status_of(api, method, path, None) == 401
    assert await status_of(api, method, path, "ctk_" + "x" * 40) == 401
    assert await status_of(api, method, path, "not-even-a-key") == 401
    assert await status_of(api, method, path, revoked) == 401
    # Another organisation's key: operator routes are forbidden to any key; routes naming one of
    # A's things answer 404, as if it did not exist; others act on B's own data only.
    other = await status_of(api, method, path, key_b, BODIES.get(route))
    if route.startswith("/v1/orgs") or (method, route) in OPERATOR_ROUTES:
        assert other in (403, 404), other
    elif "{" in route:
        assert other == 404, other
    else:
        assert other not in (401, 403), other


async def test_another_orgs_key_lists_none_of_this_orgs_things(api: ApiClient) -> None:
    ids, _, key_b = await ids_of_org_a(api)
    campaigns = await api.call("GET", "/v1/campaigns", auth=key_b)
    assert campaigns["items"] == []
    keys = await api.call("GET", "/v1/api-keys", auth=key_b)
    assert [k["org_id"] for k in keys["items"]] == [keys["items"][0]["org_id"]]
    assert ids["org_id"] not in {k["org_id"] for k in keys["items"]}
