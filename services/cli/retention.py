"""`clicktrack retention run`: drop the per-person data past its period now, or list it.

The counter does the same every hour (`services.counter.retention.maintain`); the command is for
an operator who wants it done (or seen) at once, after lowering `VISITOR_RETENTION_DAYS` say. A
run that dropped anything is a row of the audit trail, written in the transaction of the drops.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from services.cli.operator import ticket_option
from services.cli.running import run
from services.counter import retention
from shared import audit, db
from shared.settings import Settings


@click.group("retention")
def retention_group() -> None:
    """Per-person data past VISITOR_RETENTION_DAYS (event ids past DEDUP_RETENTION_DAYS)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="List the partitions that would be dropped.")
@ticket_option
@click.pass_obj
def retention_run(settings: Settings, dry_run: bool, ticket: str | None) -> None:
    """Create the partitions ahead and drop, whole, those past their period: months of visitor
    rows and per-recipient clicks older than VISITOR_RETENTION_DAYS, days of event ids older
    than DEDUP_RETENTION_DAYS. Counts are never touched."""
    counter = settings.counter
    periods = {"keep_days": counter.dedup_retention_days,
               "visitor_days": counter.visitor_retention_days}  # fmt: skip

    async def go() -> tuple[list[str], list[str]]:
        today = datetime.now(UTC).date()
        with db.errors("retention: Postgres did not answer"):
            async with db.pool(settings.postgres, max_size=1) as pool:
                if dry_run:
                    have = await retention.partitions(pool)
                    epoch = await retention.current_epoch(pool)
                    return [], retention.expired(have, today=today, epoch=epoch, **periods)
                async with pool.acquire() as conn:
                    created = await retention.prepare(conn, today=today)
                operator = audit.cli_operator()
                async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
                    dropped = await retention.prune(trail.conn, today=today, **periods)
                    if dropped:
                        await trail.record("retention.dropped", None, partitions=dropped, **periods)
                return created, dropped

    created, dropped = run(go())
    for name in created:
        click.echo(f"created {name}")
    for name in dropped:
        click.echo(f"{'would drop' if dry_run else 'dropped'} {name}")
    if not dropped:
        click.echo("nothing to drop")
