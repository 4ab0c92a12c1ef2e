"""Minting benchmark: codes for 1,000,000 recipients of one link, against the running Postgres.

Ours: `shared.minting.mint` (CSPRNG codes, one COPY, one transaction), then the same recipients
again as a resend would (every code reused, none minted). Baseline, in the same run
on the same database: the walking skeleton's way, one INSERT ... ON CONFLICT per code, timed on a
smaller sample (a million would take minutes) and reported as codes per second. Works in a
schema of its own, dropped at the end. The last line of output is one JSON object.

Usage: bench/mint [--codes N] [--baseline-codes N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time

from bench.outcome import finish
from shared import db
from shared.codes import mint_code
from shared.links import create_campaign, create_link, create_org
from shared.minting import mint
from shared.recipients import RecipientKeys
from shared.settings import Settings


class Cpu:
    """CPU seconds spent since creation by this process and by one local Postgres backend (None
    when its /proc entry cannot be read): on a shared machine, what the work itself cost."""

    def __init__(self, backend_pid: int) -> None:
        self._stat = f"/proc/{backend_pid}/stat"
        self._start = (time.process_time(), self._backend())

    def _backend(self) -> float | None:
        try:
            with open(self._stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def seconds(self) -> tuple[float, float | None]:
        client = time.process_time() - self._start[0]
        now, then = self._backend(), self._start[1]
        return client, None if now is None or then is None else round(now - then, 2)


async def run(codes: int, baseline_codes: int) -> dict[str, object]:
    load_before = round(os.getloadavg()[0], 2)
    settings = Settings.from_env().changed(POSTGRES_SCHEMA=f"bench_mint_{os.getpid()}")
    async with db.pool(settings.postgres, max_size=2) as pool:
        async with pool.acquire() as conn:
            await db.migrate(conn, settings.postgres.schema)
        try:
            org_id = await create_org(pool, "Bench", tracking=True)
            campaign_id = await create_campaign(pool, org_id, "Bench", "one_time")
            ours_link = await create_link(
                pool,
                org_id=org_id,
                campaign_id=campaign_id,
                destination="https://b.example/1",
                code_length=settings.links.code_length,
            )
            base_link = await create_link(
                pool,
                org_id=org_id,
                campaign_id=campaign_id,
                destination="https://b.example/2",
                code_length=settings.links.code_length,
            )
            vault = RecipientKeys(settings.api.recipient_key).vault(org_id)
            # Phone numbers in no particular order, as a CRM export would give them.
            recipients = [f"+91{i:010d}" for i in range(codes)]
            random.Random(7).shuffle(recipients)

            async with pool.acquire() as conn:
                backend = Cpu(await conn.fetchval("SELECT pg_backend_pid()"))
                started = time.perf_counter()
                minted = await mint(
                    conn,
                    ours_link.link_id,
                    recipients,
                    length=settings.links.code_length,
                    vault=vault,
                )
                seconds = time.perf_counter() - started
                cpu = backend.seconds()
            assert minted.minted == codes, minted.minted
            stored = await pool.fetchval(
                "SELECT count(*) FROM codes WHERE link_id = $1", ours_link.link_id
            )
            assert stored == codes + 1, stored  # plus the link's shared code

            # A resend to the same people: every recipient keeps its code, nothing is minted.
            started = time.perf_counter()
            async with pool.acquire() as conn:
                again = await mint(
                    conn,
                    ours_link.link_id,
                    recipients,
                    length=settings.links.code_length,
                    vault=vault,
                )
            reuse_seconds = time.perf_counter() - started
            assert (again.minted, again.reused) == (0, codes)
            assert again.codes == minted.codes and again.recipients == minted.recipients

            started = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                for recipient in recipients[:baseline_codes]:
                    await conn.fetchval(
                        "INSERT INTO codes (code, link_id, recipient_id) VALUES ($1, $2, $3)"
                        " ON CONFLICT (code) DO NOTHING RETURNING code",
                        mint_code(settings.links.code_length),
                        base_link.link_id,
                        recipient,
                    )
            base_seconds = time.perf_counter() - started
        finally:
            await pool.execute(f'DROP SCHEMA "{settings.postgres.schema}" CASCADE')
    ours_rate = codes / seconds
    client_cpu, server_cpu = cpu
    base_rate = baseline_codes / base_seconds
    return {
        "bench": "mint",
        "codes": codes,
        "seconds": round(seconds, 3),
        "codes_per_s": round(ours_rate),
        "target_seconds_per_million": 5.0,
        "cpu_seconds": {"client": round(client_cpu, 2), "postgres": server_cpu},
        "resend_reuse_seconds": round(reuse_seconds, 3),
        "baseline": {
            "method": "one INSERT per code (walking skeleton)",
            "codes": baseline_codes,
            "seconds": round(base_seconds, 3),
            "codes_per_s": round(base_rate),
        },
        "speedup": round(ours_rate / base_rate, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "load_1m_before": load_before,
            "load_1m_after": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "postgres": "local, shared with the other services",
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--baseline-codes", type=int, default=20_000)
    args = parser.parse_args()
    return finish("mint", lambda: asyncio.run(run(args.codes, args.baseline_codes)))


if __name__ == "__main__":
    sys.exit(main())
