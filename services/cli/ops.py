"""`clicktrack lag`, `clicktrack serve-lag` and the topic report of `clicktrack topics`."""

from __future__ import annotations

import sys

import click
import orjson

from services.ops.exporter import create_app
from services.ops.lag import GroupLag, read_lag
from services.ops.lag_status import Status
from services.ops.topics import TopicReport
from shared.errors import ClicktrackError
from shared.service import run_app
from shared.settings import Settings

EXIT_NOT_OK = 1
EXIT_ERROR = 2


@click.command("lag", context_settings={"show_default": True})
@click.option("--group", "groups", multiple=True, help="Only this group (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.option(
    "--samples",
    default=5,
    type=click.IntRange(1, 1000),
    help="Samples in the window the status is judged on (1: a snapshot, OK or STOP only).",
)
@click.option(
    "--interval",
    default=1.0,
    type=click.FloatRange(0.0, 3600.0),
    help="Seconds between two samples.",
)
@click.pass_obj
def lag(
    settings: Settings, groups: tuple[str, ...], as_json: bool, samples: int, interval: float
) -> None:
    """Consumer lag per group, topic and partition, with a Burrow-style status.

    Works for any consumer group on the cluster. Status: OK; WARN (offsets move but lag keeps
    growing); STALL (lag and the offset does not move); STOP (lag, no live member, no commits);
    REWIND (the offset went back). Exit status 0 when every group is OK, 1 when one is not,
    2 on error (Kafka unreachable, unknown group).
    """
    import asyncio

    try:
        result = asyncio.run(
            read_lag(settings.kafka.bootstrap_servers, groups, samples=samples, interval_s=interval)
        )
    except ClicktrackError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    unknown = sorted(set(groups) - {g.group for g in result})
    if as_json:
        click.echo(orjson.dumps([g.to_json() for g in result], option=orjson.OPT_INDENT_2))
    else:
        click.echo(format_table(result))
    if unknown:
        click.echo(f"error: no committed offsets for group(s) {', '.join(unknown)}", err=True)
        sys.exit(EXIT_ERROR)
    sys.exit(0 if all(g.status is Status.OK for g in result) else EXIT_NOT_OK)


def format_table(groups: list[GroupLag]) -> str:
    """The human-readable report: one header line per group, one row per partition."""
    if not groups:
        return "no consumer group has committed offsets"
    lines = []
    head = ("TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "LAG_S", "STATUS")
    for g in groups:
        lines.append(
            f"group {g.group}: {g.status.value} (state {g.state},"
            f" {'?' if g.members is None else g.members} members,"
            f" lag {g.sum_lag} records, max {g.max_lag_seconds:.1f} s)"
        )
        rows = [head] + [
            (
                p.topic,
                str(p.partition),
                str(p.committed),
                str(p.end),
                str(p.lag),
                "?" if p.lag_seconds is None else f"{p.lag_seconds:.1f}",
                p.status.value,
            )
            for p in g.partitions
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines.extend(
            "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
        )
    return "\n".join(line.rstrip() for line in lines)


@click.command("serve-lag")
@click.pass_obj
def serve_lag(settings: Settings) -> None:
    """Run the lag exporter: Prometheus metrics on LAG_HOST:LAG_PORT/metrics (default 8083)."""
    run_app(create_app(settings), settings.lag.host, settings.lag.port, settings.log.level)


def describe_topic(report: TopicReport, created: bool) -> str:
    """One line about a topic for `clicktrack topics`."""
    if not report.exists:
        return f"{report.name}: MISSING"
    state = "MISMATCH" if report.problems else ("created" if created else "ok")
    configs = ", ".join(f"{k}={v}" for k, v in sorted(report.configs.items()))
    line = (
        f"{report.name}: {state} ({report.partitions} partitions,"
        f" {report.replicas} replicas, {configs})"
    )
    return "\n".join([line, *(f"  - {p}" for p in report.problems)])
