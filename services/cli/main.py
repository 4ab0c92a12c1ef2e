"""`clicktrack`: operate the pipeline (migrations, topics, organisations, keys, links, minting,
counts, demo, retention, consumer lag, webhooks)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from services.cli.demo import run_demo
from services.cli.domains import domain
from services.cli.loadgen import LoadgenError, Plan, require_loopback, write_record
from services.cli.loadgen import run as run_load
from services.cli.misses import misses_command
from services.cli.operator import audit_command, key, mint_command, org
from services.cli.ops import describe_topic, lag, serve_lag
from services.cli.resend import resend_command
from services.cli.retention import retention_group
from services.cli.running import run
from services.cli.webhooks import webhook
from services.cli.whitelist import whitelist_group
from services.counter import rebuild, retention
from services.ops.topics import align_topics, check_topics
from services.relay import endpoints
from shared import db
from shared.counts import CountStore
from shared.erasure import forget_in_redis, pseudonymise_legacy
from shared.errors import ClicktrackError, DependencyError
from shared.kafka import ensure_topics
from shared.link_cache import cache_codes
from shared.links import create_link, create_org
from shared.recipients import RecipientKeys
from shared.redis_client import redis_client
from shared.settings import Settings


@click.group()
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Clicktrack: click tracking for short links in SMS campaigns.

    Settings come from the environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, POSTGRES_DSN, ...);
    the defaults match the native stack that `make up` starts.
    """
    try:
        ctx.obj = Settings.from_env()
    except ClicktrackError as exc:
        raise click.UsageError(str(exc)) from None


cli.add_command(org)
cli.add_command(key)
cli.add_command(mint_command)
cli.add_command(audit_command)
cli.add_command(domain)
cli.add_command(whitelist_group)
cli.add_command(retention_group)
cli.add_command(resend_command)
cli.add_command(misses_command)


@cli.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Apply the SQL migrations that are not applied yet (idempotent), then seal the webhook
    secrets stored in clear before migration 0061 with WEBHOOK_SECRET_KEY, and turn recipient
    ids stored before pseudonyms (migration 0080) into pseudonyms with RECIPIENT_KEY."""

    async def go() -> tuple[list[str], int, int]:
        async with db.pool(settings.postgres, max_size=1) as pool, pool.acquire() as conn:
            applied = await db.migrate(conn, settings.postgres.schema)
            sealer = endpoints.secrets_sealer(settings.relay.webhook_secret_key)
            async with conn.transaction():
                sealed = await endpoints.seal_stored_secrets(conn, sealer)
            legacy = await pseudonymise_legacy(conn, RecipientKeys(settings.api.recipient_key))
        if legacy.codes:  # their cached entries hold the ids: dropped, redirectors told
            async with redis_client(settings.redis) as redis:
                await forget_in_redis(redis, codes=legacy.codes)
        return applied, sealed, legacy.erased

    applied, sealed, pseudonymised = run(go())
    click.echo(f"migrations applied: {', '.join(applied)}" if applied else "schema is up to date")
    if sealed:
        click.echo(f"{sealed} webhook secrets stored in clear are sealed now")
    if pseudonymised:
        click.echo(f"{pseudonymised} recipient ids stored as given are pseudonyms now")


@cli.command()
@click.option("--check", is_flag=True, help="Only check; create nothing.")
@click.pass_obj
def topics(settings: Settings, check: bool) -> None:
    """Create the clicks and dead-letter topics if missing (and give existing ones our topic
    configs), then check their configuration (partitions, replicas, retention,
    min.insync.replicas, timestamps); exit status 1 if one differs."""
    names = [
        settings.kafka.clicks_topic,
        settings.kafka.dlq_topic,
        settings.relay.webhook_dlq_topic,
    ]
    created = [] if check else run(ensure_topics(settings.kafka, names))
    if not check:
        run(align_topics(settings, names))  # e.g. topics made before LogAppendTime
    reports = run(check_topics(settings, names))
    for report in reports:
        click.echo(describe_topic(report, report.name in created))
    sys.exit(0 if all(r.ok for r in reports) else 1)


@cli.command("link")
@click.argument("destination")
@click.option("--org", "org_name", default="demo", show_default=True, help="Organisation name.")
@click.option("--recipient", "recipients", multiple=True, help="Mint one code per recipient.")
@click.pass_obj
def link(settings: Settings, destination: str, org_name: str, recipients: tuple[str, ...]) -> None:
    """Create a tracked link to DESTINATION (in a new organisation) and print its short URLs."""

    async def go() -> None:
        async with (
            db.pool(settings.postgres, max_size=1) as pool,
            redis_client(settings.redis, required=False) as redis,
        ):
            org_id = await create_org(pool, org_name, tracking=True)
            created = await create_link(
                pool,
                org_id=org_id,
                destination=destination,
                recipients=list(recipients) or None,
                code_length=settings.links.code_length,
                keys=RecipientKeys(settings.api.recipient_key),
            )
            try:  # the running redirectors learn the codes at once (their filters, Redis)
                await cache_codes(redis, created.code_rows(), settings.links.code_cache_ttl_s)
            except DependencyError as exc:
                click.echo(f"codes not cached in Redis: {exc}", err=True)
        click.echo(f"link {created.link_id} -> {created.destination}")
        for recipient, code in created.codes.items():
            who = f" (recipient {recipient})" if recipient else ""
            click.echo(f"  {settings.links.short_base_url}/{code}{who}")

    run(go())


@cli.command()
@click.argument("link_id", type=int)
@click.pass_obj
def counts(settings: Settings, link_id: int) -> None:
    """Print the click counts of LINK_ID from Postgres (truth) and Redis (fast reads)."""

    async def go() -> None:
        async with (
            db.pool(settings.postgres, max_size=1) as pool,
            redis_client(settings.redis) as redis,
        ):
            row = await pool.fetchrow(
                "SELECT total_clicks, unique_clicks, bot_clicks FROM link_counters"
                " WHERE link_id = $1",
                link_id,
            )
            cached = await CountStore(redis).get(link_id)
        pg = tuple(row) if row else (0, 0, 0)
        rd = (cached.total, cached.unique, cached.bots) if cached else (0, 0, 0)
        click.echo(f"postgres: total={pg[0]} unique={pg[1]} bots={pg[2]}")
        click.echo(f"redis:    total={rd[0]} unique={rd[1]} bots={rd[2]}")

    run(go())


@cli.group()
def counters() -> None:
    """Operate the Redis copies of the counters."""


@counters.command("rebuild")
@click.option(
    "--reset",
    is_flag=True,
    help="Delete every counter key first (when Redis may hold values Postgres does not).",
)
@click.pass_obj
def counters_rebuild(settings: Settings, reset: bool) -> None:
    """Rebuild every Redis counter from Postgres (safe while counters run)."""

    async def go() -> tuple[int, int]:
        async with (
            db.pool(settings.postgres, max_size=1) as pool,
            redis_client(settings.redis) as redis,
        ):
            deleted = await rebuild.clear(redis) if reset else 0
            return deleted, await rebuild.rebuild(pool, CountStore(redis))

    deleted, written = run(go())
    if reset:
        click.echo(f"deleted {deleted} keys")
    click.echo(f"rebuilt {written} counters from postgres")


@cli.command()
@click.option("--prune/--no-prune", default=True, show_default=True, help="Drop expired days.")
@click.pass_obj
def partitions(settings: Settings, prune: bool) -> None:
    """Create the partitions ahead (days of the dedup tables, months of the visitor tables) and
    drop those past DEDUP_RETENTION_DAYS and VISITOR_RETENTION_DAYS (the counter does this every
    hour; `clicktrack retention run` also audits what it dropped)."""

    async def go() -> list[str]:
        async with db.pool(settings.postgres, max_size=1) as pool, pool.acquire() as conn:
            today = datetime.now(UTC).date()
            if prune:
                return await retention.maintain(
                    conn,
                    keep_days=settings.counter.dedup_retention_days,
                    visitor_days=settings.counter.visitor_retention_days,
                    today=today,
                )
            return await retention.prepare(conn, today=today)

    changed = run(go())
    click.echo("\n".join(changed) if changed else "partitions are up to date")


@cli.command()
@click.option(
    "--url", "base_url", default=None, help="Redirector base URL (default SHORT_BASE_URL)."
)
@click.option("--code", "codes", multiple=True, required=True, help="Short code(s) to click.")
@click.option("--clicks", default=1000, show_default=True, help="Clicks to send (the bound).")
@click.option(
    "--visitors", default=100, show_default=True, help="Distinct visitors to spread over."
)
@click.option("--rate", default=200.0, show_default=True, help="Clicks per second.")
@click.option("--max-seconds", default=120.0, show_default=True, help="Stop after this long.")
@click.option("--record", type=click.Path(dir_okay=False), help="Write every 302 as JSON lines.")
@click.pass_obj
def loadgen(
    settings: Settings,
    base_url: str | None,
    codes: tuple[str, ...],
    clicks: int,
    visitors: int,
    rate: float,
    max_seconds: float,
    record: str | None,
) -> None:
    """Send numbered clicks to a redirector on this machine and record every 302."""
    plan = Plan(
        base_url=(base_url or settings.links.short_base_url).rstrip("/"),
        codes=list(codes),
        clicks=clicks,
        visitors=visitors,
        rate=rate,
        max_seconds=max_seconds,
        visitor_key=settings.redirector.visitor_hash_key.reveal().encode(),
    )
    try:
        require_loopback(plan.base_url)
    except LoadgenError as exc:
        raise click.UsageError(str(exc)) from None
    with click.progressbar(length=clicks, label="clicks") as bar:
        outcome = run(run_load(plan, bar.update))
    if record:
        write_record(outcome, Path(record))
    click.echo(
        f"{len(outcome.answered)} answered 302, {len(outcome.failed)} not, "
        f"in {outcome.seconds:.1f} s"
    )
    sys.exit(0 if not outcome.failed else 1)


@cli.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the counts.")
@click.pass_obj
def demo(settings: Settings, timeout: float) -> None:
    """Create a link, click it through the running redirector (2 visitors, 3 clicks), and print
    the counts once the counter has them."""
    ok = run(run_demo(settings, timeout, click.echo))
    sys.exit(0 if ok else 1)


cli.add_command(lag)
cli.add_command(serve_lag)
cli.add_command(webhook)
