"""Operator commands: organisations, link tracking, API keys, bulk minting with a progress bar.

These talk to Postgres directly (the operator's own access), the same domain code as the API.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from typing import IO

import asyncpg
import click

from services.cli.running import run
from shared import apikeys, db, orgs
from shared.errors import InvalidInputError, NotFoundError
from shared.links import Link, get_link
from shared.minting import mint
from shared.settings import Settings

CHUNK = 100_000
"""Recipients minted per transaction by `clicktrack mint`."""


@click.group("org")
def org() -> None:
    """Organisations: create, show, list, switch link tracking, set the time zone."""


@org.command("create")
@click.argument("name")
@click.option("--key-name", default="main", show_default=True, help="Name of the first API key.")
@click.pass_obj
def org_create(settings: Settings, name: str, key_name: str) -> None:
    """Create organisation NAME (link tracking off) and its first API key, shown once."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool, pool.acquire() as conn:
            async with conn.transaction():
                org_id = await orgs.create_org(conn, name)
                _, key = await apikeys.create_api_key(conn, org_id, key_name)
        click.echo(f"organisation {org_id} created: {name} (link tracking off)")
        click.echo(f"API key (shown once, store it now): {key}")

    run(go())


@org.command("enable-tracking")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def enable_tracking(settings: Settings, org_ref: str) -> None:
    """Switch link tracking on for ORG (an id, or a unique name)."""
    run(_set_tracking(settings, org_ref, True))


@org.command("disable-tracking")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def disable_tracking(settings: Settings, org_ref: str) -> None:
    """Switch link tracking off for ORG: links in new messages then pass through untouched."""
    run(_set_tracking(settings, org_ref, False))


async def _set_tracking(settings: Settings, org_ref: str, enabled: bool) -> None:
    async with db.pool(settings.postgres, max_size=1) as pool:
        org_id = await _resolve(pool, org_ref)
        found = await orgs.set_link_tracking(pool, org_id, enabled)
    state = "on" if found.link_tracking_enabled else "off"
    click.echo(f"organisation {found.id} ({found.name}): link tracking {state}")


@org.command("timezone")
@click.argument("org_ref", metavar="ORG")
@click.argument("zone")
@click.pass_obj
def org_timezone(settings: Settings, org_ref: str, zone: str) -> None:
    """Set the time zone of ORG's reports to ZONE, an IANA name (Asia/Kolkata, Europe/London):
    their days and hours are then that zone's, exactly."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            org_id = await _resolve(pool, org_ref)
            found = await orgs.set_time_zone(pool, org_id, zone)
        click.echo(f"organisation {found.id} ({found.name}): time zone {found.time_zone}")

    run(go())


@org.command("show")
@click.argument("org_ref", metavar="ORG")
@click.pass_obj
def org_show(settings: Settings, org_ref: str) -> None:
    """Print ORG (an id, or a unique name) and its API keys (never the keys themselves)."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            found = await orgs.get_org(pool, await _resolve(pool, org_ref))
            keys = await apikeys.list_api_keys(pool, found.id)
        tracking = "on" if found.link_tracking_enabled else "off"
        click.echo(
            f"organisation {found.id}: {found.name}, link tracking {tracking},"
            f" time zone {found.time_zone}"
        )
        for key in keys:
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "live"
            click.echo(f"  key {key.id} {key.prefix}... {key.name!r} ({state})")

    run(go())


@click.group("key")
def key() -> None:
    """API keys of organisations."""


@key.command("create")
@click.argument("org_ref", metavar="ORG")
@click.option("--name", default="api key", show_default=True)
@click.pass_obj
def key_create(settings: Settings, org_ref: str, name: str) -> None:
    """Issue a new API key for ORG; it is shown once."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            org_id = await _resolve(pool, org_ref)
            record, secret = await apikeys.create_api_key(pool, org_id, name)
        click.echo(f"key {record.id} for organisation {org_id} (shown once): {secret}")

    run(go())


@key.command("revoke")
@click.argument("org_ref", metavar="ORG")
@click.argument("key_id", type=int)
@click.pass_obj
def key_revoke(settings: Settings, org_ref: str, key_id: int) -> None:
    """Revoke key KEY_ID of ORG."""

    async def go() -> None:
        async with db.pool(settings.postgres, max_size=1) as pool:
            await apikeys.revoke_api_key(pool, await _resolve(pool, org_ref), key_id)
        click.echo(f"key {key_id} revoked")

    run(go())


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
        async with db.pool(settings.postgres, max_size=1) as pool:
            link = await _link(pool, link_id)
            with click.progressbar(
                length=len(recipients), label="minting", file=sys.stderr, show_pos=True
            ) as bar:
                for chunk in _chunks(recipients, CHUNK):
                    async with pool.acquire() as conn:
                        done = await mint(conn, link.id, chunk, length=settings.links.code_length)
                    minted, reused = minted + done.minted, reused + done.reused
                    writer.writerows(
                        (r, code, f"{settings.links.short_domain}/{code}")
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


async def _resolve(pool: asyncpg.Pool, ref: str) -> int:
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
