"""Operator commands: organisations, link tracking, API keys, the audit trail, bulk minting.

These talk to Postgres directly (the operator's own access), the same domain code as the API.
Every command that changes an organisation takes `--ticket` (the support ticket it answers) and
is recorded in the audit trail under `cli:<login>` (`shared.audit`).
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import click

from services.cli.running import run
from shared import apikeys, audit, db, operator_actions, orgs
from shared.domains import link_prefix
from shared.erasure import forget_in_redis, purge_org
from shared.errors import DependencyError, InvalidInputError, NotFoundError
from shared.link_cache import cache_codes
from shared.links import Link, get_link
from shared.minting import mint
from shared.recipients import RecipientKeys
from shared.redis_client import errors as redis_errors
from shared.redis_client import redis_client
from shared.settings import Settings

T = TypeVar("T")
P = ParamSpec("P")

CHUNK = 100_000
"""Recipients minted per transaction by `clicktrack mint`."""

ticket_option = click.option(
    "--ticket", default=None, help="The support ticket this answers (kept in the audit trail)."
)


@click.group("org")
def org() -> None:
    """Organisations: create, show, list, switch link tracking, set the time zone, purge."""


@org.command("create")
@click.argument("name")
@click.option("--key-name", default="main", show_default=True, help="Name of the first API key.")
@ticket_option
@click.pass_obj
def org_create(settings: Settings, name: str, key_name: str, ticket: str | None) -> None:
    """Create organisation NAME (link tracking off) and its first API key, shown once."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            org, key = await operator_actions.create_org(
                pool, name, operator=audit.cli_operator(), ticket=ticket, key_name=key_name
            )
        assert key is not None
        click.echo(f"organisation {org.id} created: {org.name} (link tracking off)")
        click.echo(f"API key (shown once, store it now): {key[1]}")

    run(go())


@org.command("enable-tracking")
@click.argument("org_ref", metavar="ORG")
@ticket_option
@click.pass_obj
def enable_tracking(settings: Settings, org_ref: str, ticket: str | None) -> None:
    """Switch link tracking on for ORG (an id, or a unique name); its codes redirect again."""
    _set_tracking(settings, org_ref, True, ticket)


@org.command("disable-tracking")
@click.argument("org_ref", metavar="ORG")
@ticket_option
@click.pass_obj
def disable_tracking(settings: Settings, org_ref: str, ticket: str | None) -> None:
    """Switch link tracking off for ORG: nothing is minted any more, links in new messages pass
    through untouched, and its live codes stop redirecting (fallback URL, else 404)."""
    _set_tracking(settings, org_ref, False, ticket)


def _set_tracking(settings: Settings, org_ref: str, enabled: bool, ticket: str | None) -> None:
    found, link_ids = as_operator(
        settings, org_ref, operator_actions.switch_tracking, enabled, ticket=ticket
    )
    state = "on" if found.link_tracking_enabled else "off"
    click.echo(f"organisation {found.id} ({found.name}): link tracking {state}")
    run(tell_redirectors(settings, found.id, link_ids))


async def tell_redirectors(settings: Settings, org_id: int, link_ids: list[int]) -> None:
    """Drop the organisation's links from the redirectors' caches, now and once more a moment
    later (see `operator_actions.FORGET_AGAIN_S`)."""
    try:
        async with redis_client(settings.redis, retries=3) as redis:
            with redis_errors("telling the redirectors"):
                await operator_actions.forget_org(redis, org_id, link_ids)
                await asyncio.sleep(operator_actions.FORGET_AGAIN_S)
                await operator_actions.forget_org(redis, org_id, link_ids)
    except DependencyError as exc:
        raise DependencyError(
            f"the switch is saved, but the redirectors could not be told ({exc}); run the same"
            " command again"
        ) from exc


@org.command("timezone")
@click.argument("org_ref", metavar="ORG")
@click.argument("zone")
@ticket_option
@click.pass_obj
def org_timezone(settings: Settings, org_ref: str, zone: str, ticket: str | None) -> None:
    """Set the time zone of ORG's reports to ZONE, an IANA name (Asia/Kolkata, Europe/London):
    their days and hours are then that zone's, exactly."""
    found = as_operator(settings, org_ref, operator_actions.set_time_zone, zone, ticket=ticket)
    click.echo(f"organisation {found.id} ({found.name}): time zone {found.time_zone}")


@org.command("show")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def org_show(settings: Settings, org_ref: str) -> None:
    """Print ORG (an id, or a unique name) and its API keys (never the keys themselves)."""

    async def go(pool: asyncpg.Pool, org_id: int) -> tuple[orgs.Org, list[apikeys.ApiKey]]:
        return await orgs.get_org(pool, org_id), await apikeys.list_api_keys(pool, org_id)

    found, keys = on_org(settings, org_ref, go)
    tracking = "on" if found.link_tracking_enabled else "off"
    click.echo(
        f"organisation {found.id}: {found.name}, link tracking {tracking},"
        f" time zone {found.time_zone}"
    )
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
        click.echo(f"  key {key.id} {key.prefix}... {key.name!r} ({state})")


@org.command("purge")
@click.argument("org_ref", metavar="ORG")
@click.option("--yes", is_flag=True, help="Do it: without it, only say what would go.")
@ticket_option
@click.pass_obj
def org_purge(settings: Settings, org_ref: str, yes: bool, ticket: str | None) -> None:
    """Delete ORG (an id, or a unique name) and everything of it: every row in Postgres and its
    Redis keys; its late events are dropped by the counter. Cannot be undone."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            org_id = await resolve_org(pool, org_ref)
            if not yes:
                found = await orgs.get_org(pool, org_id)
                click.echo(f"would purge organisation {org_id} ({found.name}): add --yes")
                return
            async with pool.acquire() as conn:
                purged = await purge_org(conn, org_id, operator=audit.cli_operator(), ticket=ticket)
        async with redis_client(settings.redis) as redis:
            keys = await forget_in_redis(
                redis,
                codes=purged.codes,
                link_ids=purged.link_ids,
                campaign_ids=purged.campaign_ids,
            )
        rows = sum(purged.rows.values())
        click.echo(f"organisation {org_id} purged: {rows} rows, {keys} Redis keys")

    run(go())


@click.group("key")
def key() -> None:
    """API keys of organisations."""


@key.command("create")
@click.argument("org_ref", metavar="ORG")
@click.option("--name", default="api key", show_default=True)
@ticket_option
@click.pass_obj
def key_create(settings: Settings, org_ref: str, name: str, ticket: str | None) -> None:
    """Issue a new API key for ORG; it is shown once."""
    record, secret = as_operator(settings, org_ref, operator_actions.issue_key, name, ticket=ticket)
    click.echo(f"key {record.id} for organisation {record.org_id} (shown once): {secret}")


def item_command(
    group: click.Group,
    name: str,
    item: str,
    act: Callable[..., Awaitable[object]],
    done: str,
    doc: str,
) -> None:
    """`clicktrack GROUP NAME ORG ITEM [--ticket T]`: an operator action on one item of an
    organisation, `act(pool, org_id, item_id, operator=..., ticket=...)`; then prints `done`
    with the item's id in its `{}`."""

    @group.command(name, help=doc)
    @click.argument("org_ref", metavar="ORG")
    @click.argument("item_id", metavar=item, type=int)
    @ticket_option
    @click.pass_obj
    def command(settings: Settings, org_ref: str, item_id: int, ticket: str | None) -> None:
        as_operator(settings, org_ref, act, item_id, ticket=ticket)
        click.echo(done.format(item_id))


item_command(
    key, "revoke", "KEY_ID", operator_actions.revoke_key, "key {} revoked",
    "Revoke key KEY_ID of ORG.",
)  # fmt: skip


@click.command("audit")
@click.option("--org", "org_ref", default=None, help="Only this organisation (id or name).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_obj
def audit_command(settings: Settings, org_ref: str | None, limit: int) -> None:
    """Print the newest LIMIT operator actions, oldest first: time, operator, action,
    organisation, ticket and what changed."""

    async def go() -> list[audit.AuditEntry]:
        async with db.pool(settings.postgres, max_size=1) as pool:
            org_id = None if org_ref is None else await resolve_org(pool, org_ref)
            return await audit.list_entries(pool, org_id=org_id, limit=limit, newest=True)

    for entry in run(go()):
        detail = " ".join(f"{k}={v}" for k, v in sorted(entry.detail.items()))
        click.echo(
            f"{entry.at:%Y-%m-%dT%H:%M:%SZ}  {entry.operator}  {entry.action}"
            f"  org={entry.org_id if entry.org_id is not None else '-'}"
            f"  ticket={entry.ticket or '-'}" + (f"  {detail}" if detail else "")
        )


@click.command("mint")
@click.argument("link_id", type=int)
@click.option(
    "--recipients",
    "source",
    type=click.File("r", encoding="utf-8"),
    required=True,
    help="File of recipient ids, one per line ('-' for stdin).",
)
@click.option(
    "--out",
    type=click.File("w", encoding="utf-8"),
    default="-",
    show_default=True,
    help="CSV of recipient,code,short_url.",
)
@click.pass_obj
def mint_command(settings: Settings, link_id: int, source: IO[str], out: IO[str]) -> None:
    """Mint one short code per recipient of LINK_ID (recipients that have one keep it), in
    transactions of 100,000, with a progress bar on stderr."""
    recipients = [line.strip() for line in source if line.strip()]

    async def go() -> tuple[int, int]:
        writer = csv.writer(out)
        writer.writerow(["recipient", "code", "short_url"])
        minted = reused = 0
        async with (
            db.pool(settings.postgres, max_size=1) as pool,
            redis_client(settings.redis, required=False) as redis,
        ):
            link = await _link(pool, link_id)
            prefix = await link_prefix(pool, link, settings.links.short_domain)
            vault = RecipientKeys(settings.api.recipient_key).vault(link.org_id)
            with click.progressbar(
                length=len(recipients), label="minting", file=sys.stderr, show_pos=True
            ) as bar:
                for chunk in _chunks(recipients, CHUNK):
                    async with pool.acquire() as conn, conn.transaction():
                        await orgs.require_tracking(conn, link.org_id)
                        done = await mint(
                            conn, link.id, chunk, length=settings.links.code_length, vault=vault
                        )
                    minted, reused = minted + done.minted, reused + done.reused
                    rows = done.code_rows(link.id)
                    try:  # first taps read Redis; without it they read Postgres
                        await cache_codes(redis, rows, settings.links.code_cache_ttl_s)
                    except DependencyError as exc:
                        click.echo(f"codes not cached in Redis: {exc}", err=True)
                    writer.writerows(
                        (r, code, prefix.url(code))
                        for r, code in zip(done.recipients, done.codes, strict=True)
                    )
                    bar.update(len(chunk))
        return minted, reused

    minted, reused = run(go())
    click.echo(f"link {link_id}: {minted} codes minted, {reused} reused", err=True)


async def _link(pool: asyncpg.Pool, link_id: int) -> Link:
    org_id = await pool.fetchval("SELECT org_id FROM links WHERE id = $1", link_id)
    if org_id is None:
        raise NotFoundError(f"link {link_id} does not exist")
    return await get_link(pool, org_id, link_id)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def as_operator(
    settings: Settings,
    ref: str,
    act: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    ticket: str | None,
    **options: Any,
) -> T:
    """What `act(pool, org_id, *args, operator=..., ticket=ticket, **options)`, an operator
    action of `shared` (`shared.operator_actions` and the like), returns for the organisation
    `ref`, recorded in the audit trail under `cli:<login>` (see `on_org`)."""
    operator = audit.cli_operator()
    return on_org(settings, ref, act, *args, operator=operator, ticket=ticket, **options)


def on_org(
    settings: Settings,
    ref: str,
    act: Callable[Concatenate[asyncpg.Pool, int, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """What `act(pool, org_id, *args, **kwargs)` returns for the organisation `ref` (an id or a
    unique name): the one way a command reads or changes one organisation's rows. A Clicktrack
    error ends the command with one line on stderr (`run`)."""

    async def go() -> T:
        async with db.pool(settings.postgres, max_size=1) as pool:
            return await act(pool, await resolve_org(pool, ref), *args, **kwargs)

    return run(go())


async def resolve_org(pool: asyncpg.Pool, ref: str) -> int:
    """An organisation id from an id or a unique name."""
    if ref.isdigit():
        return (await orgs.get_org(pool, int(ref))).id
    ids = [r["id"] for r in await pool.fetch("SELECT id FROM orgs WHERE name = $1", ref)]
    if not ids:
        raise NotFoundError(f"no organisation is named {ref!r}")
    if len(ids) > 1:
        raise InvalidInputError(
            f"{len(ids)} organisations are named {ref!r} (ids {', '.join(map(str, ids))}):"
            " give the id"
        )
    return int(ids[0])
