"""Steps (f), (h) and (i) of `bench/redirect`, on the real redirector, one process.

(f) fresh codes: the redirector runs; then codes are minted in bulk the way the API and the CLI
    mint them (`shared.minting.mint`, then `link_cache.cache_codes`: Redis and the redirectors'
    filters), as many as the requests to come, and wrk asks for each once (each thread walks
    its own slice). Reported beside the warm case (c) as `ratio_fresh_vs_warm` and
    `ratio_fresh_p99_vs_warm_p99`.
(h) a flood of random codes of a valid shape (never minted) from 40 connections while 10 more
    ask for real codes: the Postgres lookups per 1,000 flood requests, and the real codes served.
(i) the warm redirector at a fixed rate, half the maximum measured in (c): the latency a visitor
    sees on a normal day (wrk paces each connection; the rate reached is reported).
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import db
from shared.link_cache import cache_codes
from shared.minting import mint
from shared.recipients import RecipientKeys
from shared.redis_client import redis_client

if TYPE_CHECKING:
    from bench.redirect_bench import Bench

FLOOD_CONNECTIONS = 40
REAL_CONNECTIONS = 10


async def mint_fresh(bench: Bench, link_id: int, count: int) -> tuple[list[str], float]:
    """Mint `count` codes on `link_id` and cache them as the API does; the codes (shuffled)
    and the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    s = bench.settings
    codes: list[str] = []
    async with db.pool(s.postgres, max_size=2) as pool, redis_client(s.redis) as redis:
        org_id = await pool.fetchval("SELECT org_id FROM links WHERE id = $1", link_id)
        vault = RecipientKeys(s.api.recipient_key).vault(org_id)
        for start in range(0, count, 100_000):
            recipients = [f"f{i}" for i in range(start, min(start + 100_000, count))]
            async with pool.acquire() as conn:
                got = await mint(conn, link_id, recipients, length=s.links.code_length, vault=vault)
            rows = got.code_rows(link_id)
            await cache_codes(redis, rows, s.links.code_cache_ttl_s)
            codes += got.codes
    # Shuffled: minting sorts codes, and a walk in sorted order would be kinder to caches
    # than visitors are.
    random.Random(count).shuffle(codes)
    return codes, loop.time() - started


def fresh(bench: Bench, port: int, metric: Any, warm_rps: float, pid: int) -> dict[str, Any]:
    """(f) on the redirector listening on `port` (process `pid`, never asked for these codes)."""
    from bench.redirect_bench import cpu_seconds

    result: dict[str, Any] = {}
    count = int(warm_rps * bench.seconds * 1.5) + 5_000
    codes = bench.work / "fresh.txt"
    minted, seconds = asyncio.run(mint_fresh(bench, bench.link_id, count))
    codes.write_text("\n".join(minted) + "\n")
    result["fresh_mint_s"] = round(seconds, 2)
    before = {name: metric(port, name) for name in _LOOKUPS}
    cpu = cpu_seconds(pid)
    figures = bench.wrk(port, bench.seconds, mode="walk", codes=codes)
    result["fresh_cpu_us"] = round((cpu_seconds(pid) - cpu) * 1e6 / max(figures["requests"], 1), 1)
    result.update({f"fresh_{k}": v for k, v in figures.items()})
    result["fresh_codes"] = count
    result["fresh_all_fresh"] = figures["requests"] <= count
    for name in _LOOKUPS:
        result[f"fresh_{_LOOKUPS[name]}"] = metric(port, name) - before[name]
    return result


def flood(bench: Bench, port: int, metric: Any, real_codes: Path) -> dict[str, Any]:
    """(h): random codes from `FLOOD_CONNECTIONS`, real ones (`real_codes`, in memory) beside."""
    lookups = "clicktrack_resolve_postgres_lookups_total"
    syncs = "clicktrack_minted_filter_syncs_total"
    before, syncs_before = metric(port, lookups), metric(port, syncs)
    real: dict[str, float] = {}

    def real_clicks() -> None:
        real.update(
            bench.wrk(
                port, bench.seconds, mode="random", codes=real_codes, connections=REAL_CONNECTIONS
            )
        )

    beside = threading.Thread(target=real_clicks)
    beside.start()
    try:
        figures = bench.wrk(port, bench.seconds, mode="invent", connections=FLOOD_CONNECTIONS)
    finally:
        beside.join()
    queries = metric(port, lookups) - before
    synced = metric(port, syncs) - syncs_before
    return {
        "flood_rps": figures["rps"],
        "flood_requests": figures["requests"],
        "flood_non_3xx": figures["non_3xx"],  # 404s: every flood request
        "flood_pg_queries": queries,
        "pg_queries_per_1k_random": round(queries * 1000 / max(figures["requests"], 1), 3),
        "flood_filtered": metric(port, "clicktrack_resolve_filtered_total"),
        # A miss waits for a `SELECT 1` on the filter's listening connection, shared by every miss
        # before it and at most one each 20 ms: not a lookup, but Postgres work all the same.
        "flood_filter_syncs": synced,
        "flood_filter_syncs_per_s": round(synced / bench.seconds, 1),
        "flood_real_rps": real["rps"],
        "flood_real_p99_ms": real["p99_ms"],
        "flood_real_non_3xx": real["non_3xx"],
    }


def fixed_rate(bench: Bench, port: int, max_rps: float) -> dict[str, Any]:
    """(i): wrk paced to about half of `max_rps` (each connection waits between requests)."""
    target = max_rps / 2
    connections = 50
    delay_ms = max(int(connections * 1000 / target) - 1, 1)
    figures = bench.wrk(port, bench.seconds, connections=connections, delay_ms=delay_ms)
    return {
        "half_target_rps": round(target, 1),
        "half_rps": figures["rps"],
        "half_p50_ms": figures["p50_ms"],
        "half_p99_ms": figures["p99_ms"],
    }


_LOOKUPS = {
    "clicktrack_resolve_postgres_lookups_total": "pg_queries",
    "clicktrack_resolve_filtered_total": "filtered",
}
