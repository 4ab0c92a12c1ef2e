"""A test client for the links API that checks every answer against /v1/openapi.json."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import aiohttp
import jsonschema

from services.api.openapi import document

OPERATOR_TOKEN = "operator-test-token-" + "k" * 32
SHORT_DOMAIN = "s.ex.in"  # 7 + 1 + 10 = 18-character short links
LONG_URL = "https://shop.example.in/diwali/offers?utm_source=sms"  # 52 characters
TEMPLATE = "Dear {#var#}, your Diwali offer: {#var#} Valid till Sunday. -ACME"
WHITELISTED = (SHORT_DOMAIN, "shop.example.in/", "help.example.in/", "www.acme.in/", "acme.in/")
"""DLT whitelist entries that cover the links the rendering tests send (any header)."""


class ApiClient:
    """Calls the API by route template; asserts the status, validates the body against the
    documented schema of that route and status, and returns the decoded body."""

    def __init__(self, http: aiohttp.ClientSession, metrics_url: str = "", url: str = "") -> None:
        self.http = http
        self.url = url
        """Base URL of the API (for a client of its own, such as `clicktrack resend`)."""
        self.doc = document()
        self.metrics_url = metrics_url
        """Base URL of the API's `/metrics`, served apart from its public port."""

    async def call(
        self,
        method: str,
        route: str,
        *,
        auth: str | None,
        json: Any = None,
        expect: int = 200,
        data: bytes | None = None,
        **params: int | str,
    ) -> Any:
        headers = {"Authorization": f"Bearer {auth}"} if auth else {}
        path = route.format(**params)
        async with self.http.request(method, path, json=json, data=data, headers=headers) as resp:
            body = await resp.json()
            assert resp.status == expect, (resp.status, body)
            if expect == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        answer = self.doc["paths"][route.split("?")[0]][method.lower()]["responses"][str(expect)]
        schema = answer["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": self.doc["components"]}).validate(
            body
        )
        return body

    async def new_org(
        self, name: str, *, tracking: bool = False, whitelisted: tuple[str, ...] = ()
    ) -> tuple[int, str]:
        """(org id, API key) of a new organisation, created as the operator, with the short
        domains (for every header) and URL prefixes `whitelisted` on its DLT whitelist."""
        org = await self.call(
            "POST", "/v1/orgs", auth=OPERATOR_TOKEN, json={"name": name}, expect=201
        )
        for value in whitelisted:
            await self.call(
                "POST",
                "/v1/orgs/{org_id}/dlt-whitelist",
                auth=OPERATOR_TOKEN,
                json={"value": value},
                expect=201,
                org_id=org["id"],
            )
        if tracking:
            await self.call(
                "PUT",
                "/v1/orgs/{org_id}/link-tracking",
                auth=OPERATOR_TOKEN,
                json={"enabled": True},
                org_id=org["id"],
            )
        key = await self.call(
            "POST",
            "/v1/orgs/{org_id}/api-keys",
            auth=OPERATOR_TOKEN,
            json={"name": "main"},
            expect=201,
            org_id=org["id"],
        )
        return org["id"], key["key"]

    async def new_campaign(self, key: str, kind: str = "one_time", **extra: object) -> int:
        """Id of a new campaign of the key's organisation."""
        body = {"name": f"{kind} campaign", "kind": kind, **extra}
        created = await self.call("POST", "/v1/campaigns", auth=key, json=body, expect=201)
        return int(created["id"])

    async def new_link(self, key: str, campaign_id: int, destination: str) -> int:
        """Id of a new link of the campaign (201: created, not reused)."""
        created = await self.call(
            "POST",
            "/v1/campaigns/{campaign_id}/links",
            auth=key,
            json={"destination": destination},
            expect=201,
            campaign_id=campaign_id,
        )
        return int(created["id"])

    async def render(self, key: str, expect: int = 200, **body: object) -> Any:
        """The answer of `POST /v1/render` with `body`."""
        return await self.call("POST", "/v1/render", auth=key, json=body, expect=expect)

    async def pseudonyms(self, key: str) -> Callable[[str], str]:
        """The pseudonym of a recipient id for the key's organisation, computed from the key
        `GET /v1/recipients/key` gives, as docs/click-topic.md tells a subscriber to."""
        answer = await self.call("GET", "/v1/recipients/key", auth=key)
        secret = base64.urlsafe_b64decode(answer["key"] + "=" * (-len(answer["key"]) % 4))

        def pseudonym(recipient: str) -> str:
            return hmac.new(secret, recipient.encode(), hashlib.sha256).hexdigest()[:32]

        return pseudonym
