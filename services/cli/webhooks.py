"""`clicktrack webhook add|list|remove`: an organisation's webhook endpoints."""

from __future__ import annotations

import click

from services.cli.operator import as_operator, item_command, ticket_option
from services.cli.running import run as _run
from services.relay import endpoints
from shared import db
from shared.settings import Settings


@click.group("webhook")
def webhook() -> None:
    """Webhook endpoints that receive an organisation's clicks (see docs/click-topic.md)."""


@webhook.command("add")
@ticket_option
@click.argument("org_ref", metavar="ORG")
@click.argument("url")
@click.pass_obj
def add(settings: Settings, ticket: str | None, org_ref: str, url: str) -> None:
    """Register URL (https) for ORG's clicks; prints the signing secret, shown only once."""
    endpoint, secret = as_operator(
        settings, org_ref, endpoints.register, url,
        allow_insecure=settings.relay.webhook_allow_insecure,
        sealer=endpoints.secrets_sealer(settings.relay.webhook_secret_key), ticket=ticket,
    )  # fmt: skip
    click.echo(f"endpoint {endpoint.id} for organisation {endpoint.org_id}: {endpoint.url}")
    click.echo(f"signing secret (store it now, it is not shown again): {secret}")


@webhook.command("list")
@click.argument("org_id", type=int)
@click.pass_obj
def list_(settings: Settings, org_id: int) -> None:
    """The enabled endpoints of ORG_ID (secrets are not shown)."""

    async def go() -> dict[int, list[endpoints.Endpoint]]:
        async with db.pool(settings.postgres, max_size=1) as pool:
            sealer = endpoints.secrets_sealer(settings.relay.webhook_secret_key)
            return await endpoints.of_orgs(pool, [org_id], sealer)

    found = _run(go()).get(org_id, [])
    for endpoint in found:
        click.echo(f"endpoint {endpoint.id}: {endpoint.url}")
    if not found:
        click.echo(f"organisation {org_id} has no webhook endpoint")


item_command(
    webhook, "remove", "ENDPOINT_ID", endpoints.remove, "endpoint {} removed",
    "Delete ENDPOINT_ID of ORG.",
)  # fmt: skip
