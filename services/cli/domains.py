"""Operator commands for short domains: `clicktrack domain add|remove|list`, and
`clicktrack org header-in-path`. Each change is in the audit trail (`--ticket`), and the running
redirectors are told to reload their hosts (they also reload every `LOCAL_CACHE_TTL_S`)."""

from __future__ import annotations

import click

from services.cli.operator import as_operator, on_org, org, ticket_option
from services.cli.running import run
from shared import domains, orgs
from shared.audit import Action
from shared.errors import DependencyError
from shared.link_cache import domains_changed
from shared.redis_client import errors as redis_errors
from shared.redis_client import redis_client
from shared.settings import Settings


@click.group("domain")
def domain() -> None:
    """Short domains of organisations (each brand whitelists its own on DLT)."""


@domain.command("add")
@click.argument("org_ref", metavar="ORG")
@click.argument("name", metavar="DOMAIN")
@click.option("--default", "default", is_flag=True, help="Make it the organisation's default.")
@click.option("--move", is_flag=True, help="Take it over from the organisation that has it.")
@ticket_option
@click.pass_obj
def domain_add(
    settings: Settings, org_ref: str, name: str, default: bool, move: bool, ticket: str | None
) -> None:
    """Register DOMAIN (a host name like s.brand.in) for ORG; its first domain is its default."""
    added = as_operator(
        settings, org_ref, domains.add_domain, name, default=default, move=move,
        longest_link=domains.longest_link(settings),
        global_domain=settings.links.short_domain, ticket=ticket,
    )  # fmt: skip
    run(_announce(settings))
    role = " (default)" if added.is_default else ""
    click.echo(f"organisation {added.org_id}: short domain {added.domain}{role}")


@domain.command("remove")
@click.argument("org_ref", metavar="ORG")
@click.argument("name", metavar="DOMAIN")
@ticket_option
@click.pass_obj
def domain_remove(settings: Settings, org_ref: str, name: str, ticket: str | None) -> None:
    """Remove DOMAIN from ORG: its links on that domain answer 404 from then on."""
    removed = as_operator(settings, org_ref, domains.remove_domain, name, ticket=ticket)
    run(_announce(settings))
    click.echo(f"organisation {removed.org_id}: short domain {removed.domain} removed")


@domain.command("list")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def domain_list(settings: Settings, org_ref: str) -> None:
    """Print ORG's short domains, the default first."""
    found = on_org(settings, org_ref, domains.list_domains)
    if not found:
        click.echo(f"none: links use the global short domain {settings.links.short_domain}")
    for item in found:
        click.echo(f"{item.domain}{' (default)' if item.is_default else ''}")


def _switch_command(name: str, column: str, action: Action, label: str, doc: str) -> None:
    """`clicktrack org NAME ORG on|off [--ticket T]`: switch the organisation's `column`."""

    @org.command(name, help=doc)
    @click.argument("org_ref", metavar="ORG")
    @click.argument("state", type=click.Choice(["on", "off"]))
    @ticket_option
    @click.pass_obj
    def switch(settings: Settings, org_ref: str, state: str, ticket: str | None) -> None:
        on = state == "on"
        before = domains.header_room(domains.longest_link(settings), settings.links.short_domain)
        found = as_operator(
            settings, org_ref, orgs.switch, column, on, ticket=ticket, action=action,
            before=before if on and column == "header_in_path" else None,
        )  # fmt: skip
        click.echo(f"organisation {found.id} ({found.name}): {label} {state}")


_switch_command(
    "header-in-path",
    "header_in_path",
    "org.header_in_path",
    "header in path",
    "Put the campaign's DLT header in the path of ORG's short links (s.brand.in/ABCDEF/code),"
    " or not.",
)
_switch_command(
    "whitelist-check",
    "dlt_whitelist_check",
    "org.whitelist_check",
    "whitelist check",
    "Whether rendering refuses ORG's links that its DLT whitelist lacks (on for new"
    " organisations; off for those older than the whitelist, until it is imported).",
)


async def _announce(settings: Settings) -> None:
    try:
        async with redis_client(settings.redis, retries=1) as redis:
            with redis_errors("telling the redirectors"):
                await domains_changed(redis)
    except DependencyError as exc:
        click.echo(
            f"warning: redirectors not told ({exc}); they reload their hosts within"
            f" {settings.redirector.local_cache_ttl_s} s",
            err=True,
        )
