"""`clicktrack misses`: taps that led nowhere, per short domain, UTC day and reason
(`shared.misses`), for operators: typos in a sent link, a disabled link still being tapped, a
brand's codes asked for on another brand's domain."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from services.cli.running import run
from shared import misses
from shared.redis_client import redis_client
from shared.settings import Settings


@click.command("misses")
@click.option("--days", type=click.IntRange(1, misses.KEEP_DAYS), default=7, show_default=True,
              help="UTC days to show, up to today.")  # fmt: skip
@click.option("--domain", default=None, help="Only this short domain.")
@click.pass_obj
def misses_command(settings: Settings, days: int, domain: str | None) -> None:
    """Taps on unknown, malformed or disabled codes, on another organisation's domain or under a
    wrong DLT header: per short domain, UTC day and reason (a total per domain and reason
    last)."""

    async def go() -> list[misses.Miss]:
        async with redis_client(settings.redis, retries=3) as redis:
            return await misses.read(redis, datetime.now(UTC).date(), days)

    found = [m for m in run(go()) if domain is None or m[1] == domain.lower()]
    if not found:
        click.echo(f"no misses in the last {days} UTC days")
        return
    width = max(len("domain"), *(len(m[1]) for m in found))
    click.echo(f"{'day (UTC)':<10}  {'domain':<{width}}  {'reason':<12}  {'taps':>8}")
    totals: dict[tuple[str, str], int] = {}
    for day, name, reason, count in found:
        click.echo(f"{day.isoformat():<10}  {name:<{width}}  {reason:<12}  {count:>8}")
        totals[(name, reason)] = totals.get((name, reason), 0) + count
    for (name, reason), count in sorted(totals.items()):
        click.echo(f"{'total':<10}  {name:<{width}}  {reason:<12}  {count:>8}")
