"""Operator commands for organisations' DLT whitelists: `clicktrack whitelist add|import|list|
remove`. Senders keep their whitelist in a spreadsheet: `import` reads it as CSV (a header row
naming value and any of header, dlt_ref, whitelisted_on), all or nothing, and `--dry-run` shows
what it would add. Each change is in the audit trail (`--ticket`)."""

from __future__ import annotations

from typing import IO

import click

from services.cli.operator import as_operator, on_org, ticket_option
from shared import whitelist
from shared.settings import Settings


@click.group("whitelist")
def whitelist_group() -> None:
    """DLT whitelists: the short domains (with headers) and URLs an organisation whitelisted."""


@whitelist_group.command("add")
@click.argument("org_ref", metavar="ORG")
@click.argument("value")
@click.option("--header", default=None, help="The DLT header a short domain goes with.")
@click.option("--ref", "dlt_ref", default=None, help="The DLT portal's reference.")
@click.option("--date", "whitelisted_on", default=None, help="When it was whitelisted.")
@ticket_option
@click.pass_obj
def whitelist_add(
    settings: Settings,
    org_ref: str,
    value: str,
    header: str | None,
    dlt_ref: str | None,
    whitelisted_on: str | None,
    ticket: str | None,
) -> None:
    """Add VALUE to ORG's whitelist: a short domain (s.brand.in, with --header, else for every
    header) or the start of URLs sent untracked (https://shop.brand.in/offers/)."""
    entry = whitelist.new_entry(value, header, dlt_ref, whitelisted_on)
    _store(settings, org_ref, [entry], dry_run=False, ticket=ticket)


@whitelist_group.command("import")
@click.argument("org_ref", metavar="ORG")
@click.argument("source", type=click.File("r", encoding="utf-8-sig"))
@click.option("--dry-run", is_flag=True, help="Only print what would be added.")
@ticket_option
@click.pass_obj
def whitelist_import(
    settings: Settings, org_ref: str, source: IO[str], dry_run: bool, ticket: str | None
) -> None:
    """Add the entries of the CSV file SOURCE ('-' for stdin) that ORG lacks."""
    entries = whitelist.parse_csv(source.read())
    _store(settings, org_ref, entries, dry_run=dry_run, ticket=ticket)


@whitelist_group.command("list")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def whitelist_list(settings: Settings, org_ref: str) -> None:
    """Print ORG's whitelist: id, kind, value, header, DLT reference, date."""
    for e in on_org(settings, org_ref, whitelist.list_entries):
        click.echo(
            f"{e.id}  {e.kind}  {e.value}  {e.header or '*'}  {e.dlt_ref or '-'}"
            f"  {e.whitelisted_on or '-'}"
        )


@whitelist_group.command("remove")
@click.argument("org_ref", metavar="ORG")
@click.argument("entry_id", type=int)
@ticket_option
@click.pass_obj
def whitelist_remove(settings: Settings, org_ref: str, entry_id: int, ticket: str | None) -> None:
    """Remove entry ENTRY_ID (see `whitelist list`) from ORG's whitelist."""
    removed = as_operator(settings, org_ref, whitelist.remove_entry, entry_id, ticket=ticket)
    click.echo(f"removed {removed.kind} {removed.value} {removed.header or ''}".rstrip())


def _store(
    settings: Settings,
    org_ref: str,
    entries: list[whitelist.NewEntry],
    *,
    dry_run: bool,
    ticket: str | None,
) -> None:
    """Add the entries ORG lacks (or, `dry_run`, only say which) and print what was done."""
    added, kept = as_operator(
        settings, org_ref, whitelist.import_entries, entries, dry_run=dry_run, ticket=ticket
    )
    verb = "would add" if dry_run else "added"
    for entry in added:
        click.echo(f"{verb} {entry.kind} {entry.value} {entry.header or '*'}")
    click.echo(f"{len(added)} {verb}, {len(kept)} already whitelisted")
