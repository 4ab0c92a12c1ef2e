"""A/B of the redirector: this tree against an earlier commit, one process each, interleaved.

`python -m bench.redirect_ab OLD [--new REV] [--rounds N] [--seconds S] [--fresh N]`

Whole `bench/redirect` runs of two revisions, one after the other, differ by more than the
change being measured on a busy two-core machine (the same code moves ±40 % run to run). This
runs both redirectors at once on the same schema, codes and topic, primes both, then alternates
wrk rounds between them (old, new, new, old, ...) so each pair sees the same moment of the
machine; the figure is the median of the per-pair ratios new/old, with the best of each.

OLD (and `--new`, default: this working tree) is checked out with `git worktree add --detach`
into the run's temporary directory and started from there with its own code on `PYTHONPATH`;
the schema is migrated by this tree, so OLD must read today's schema (any commit of the
consolidated pipeline does). Needs the shared stack (`make up`). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import redirect_bench as rb
from bench.outcome import finish
from bench.redirect_steps import mint_fresh

PORTS = {"old": 18091, "new": 18092}


def checkout(rev: str, into: Path) -> Path:
    """A detached worktree of `rev` at `into`; its full commit id is written to `into/.rev`."""
    subprocess.run(
        ["git", "-C", str(rb.ROOT), "worktree", "add", "--detach", "-q", str(into), rev],
        check=True,
    )
    full = subprocess.run(
        ["git", "-C", str(into), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (into / ".rev").write_text(full)
    return into


def start(bench: rb.Bench, name: str, tree: Path) -> int:
    """A one-process redirector of the code in `tree` on `PORTS[name]`; its pid."""
    port = PORTS[name]
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "REDIRECTOR_HOST": "127.0.0.1",
        "REDIRECTOR_PORT": str(port),
        "REDIRECTOR_WORKERS": "1",
        "REDIRECTOR_METRICS_PORT": str(port + rb.METRICS_PORT_OFFSET),
        "POSTGRES_SCHEMA": bench.settings.postgres.schema,
        "CLICKS_TOPIC": bench.settings.kafka.clicks_topic,
        "KAFKA_BOOTSTRAP_SERVERS": bench.settings.kafka.bootstrap_servers,
        "SPOOL_DIR": str(bench.work / f"spool-{name}"),
        "LOG_LEVEL": "WARNING",
    }
    out = open(bench.work / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.redirector"],
        env=env,
        cwd=tree,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    out.close()
    bench.procs.append(proc)
    rb.wait_http(port, "/readyz")
    return proc.pid


def round_of(bench: rb.Bench, name: str, args: argparse.Namespace, i: int) -> dict[str, float]:
    """One wrk round on `name`: warm codes at random, or with `--fresh` codes minted for this
    round only (`args.fresh` of them, as the API mints them), each asked for once."""
    if not args.fresh:
        return bench.wrk(PORTS[name], args.seconds)
    minted, _ = asyncio.run(mint_fresh(bench, bench.link_id, args.fresh))
    codes = bench.work / f"fresh-{name}-{i}.txt"
    codes.write_text("\n".join(minted) + "\n")
    figures = bench.wrk(PORTS[name], args.seconds, mode="walk", codes=codes)
    if figures["requests"] > args.fresh:
        raise RuntimeError(f"round {i + 1} asked for more codes than minted: raise --fresh")
    return figures


def measure(args: argparse.Namespace) -> dict[str, Any]:
    # `Bench.prepare` also makes the topics on the outage run's own broker: here that is the
    # shared one (no outage is run).
    rb.OWN_BROKER = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    started = time.monotonic()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="clicktrack-ab-") as tmp:
        work = Path(tmp)
        trees = {"old": checkout(args.old, work / "old")}
        trees["new"] = checkout(args.new, work / "new") if args.new else rb.ROOT
        revs = {
            name: (tree / ".rev").read_text() for name, tree in trees.items() if tree != rb.ROOT
        }
        revs.setdefault("new", "working tree")
        bench = rb.Bench(work)
        bench.seconds = args.seconds
        try:
            asyncio.run(bench.prepare())
            pids = {name: start(bench, name, tree) for name, tree in trees.items()}
            for name in PORTS:
                rb.log(f"priming {name}")
                bench.prime(PORTS[name], 1)
            runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for i in range(args.rounds):
                order = ("old", "new") if i % 2 == 0 else ("new", "old")
                for name in order:
                    runs[name].append(round_of(bench, name, args, i))
                rb.log(f"round {i + 1}: old {runs['old'][-1]['rps']} new {runs['new'][-1]['rps']}")
            cpu = {name: rb.cpu_seconds(pid) for name, pid in pids.items()}
            sent = {name: rb.metric(PORTS[name], "clicktrack_events_sent_total") for name in PORTS}
        finally:
            bench.stop_all()
            asyncio.run(bench.cleanup())
            for tree in trees.values():
                if tree != rb.ROOT:
                    subprocess.run(
                        ["git", "-C", str(rb.ROOT), "worktree", "remove", "--force", str(tree)],
                        check=False,
                    )
    pairs = [n["rps"] / o["rps"] for o, n in zip(runs["old"], runs["new"], strict=True)]
    return {
        "old": revs["old"],
        "new": revs["new"],
        "rounds": args.rounds,
        "codes": f"{args.fresh} fresh a round" if args.fresh else "warm",
        "seconds_each": args.seconds,
        "connections": rb.CONNECTIONS,
        "rps_old": [r["rps"] for r in runs["old"]],
        "rps_new": [r["rps"] for r in runs["new"]],
        "best_old": max(r["rps"] for r in runs["old"]),
        "best_new": max(r["rps"] for r in runs["new"]),
        "p99_ms_median_old": statistics.median(r["p99_ms"] for r in runs["old"]),
        "p99_ms_median_new": statistics.median(r["p99_ms"] for r in runs["new"]),
        "errors": sum(r["non_3xx"] + r["socket_errors"] for rs in runs.values() for r in rs),
        "cpu_s_old": round(cpu["old"], 1),
        "cpu_s_new": round(cpu["new"], 1),
        "events_sent_old": sent["old"],
        "events_sent_new": sent["new"],
        "requests_measured_old": sum(r["requests"] for r in runs["old"]),
        "requests_measured_new": sum(r["requests"] for r in runs["new"]),
        "ratio_median_pairwise": round(statistics.median(pairs), 3),
        "ratio_best_new_vs_old": round(
            max(r["rps"] for r in runs["new"]) / max(r["rps"] for r in runs["old"]), 3
        ),
        "loadavg_1m_start": round(load_start[0], 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the commit to compare against")
    parser.add_argument("--new", default="", help="a commit (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument(
        "--fresh",
        type=int,
        default=0,
        help="codes minted before each round and each asked for once (0: warm codes)",
    )
    args = parser.parse_args()
    return finish("redirect_ab", lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
