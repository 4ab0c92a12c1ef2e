"""The operator CLI as a support engineer runs it: a real `clicktrack` process, test schema."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from shared.link_cache import cache_codes
from shared.links import create_campaign, create_link, create_org
from shared.recipients import RecipientKeys
from shared.settings import Settings
from tests.helpers import keyed_org

pytestmark = pytest.mark.integration

CLICKTRACK = str(Path(sys.executable).parent / "clicktrack")


async def clicktrack(
    settings: Settings, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `clicktrack ARGS` on this test's schema, with `env` added
    to the environment."""
    env = {
        **os.environ,
        "POSTGRES_DSN": settings.postgres.dsn.reveal(),
        "POSTGRES_SCHEMA": settings.postgres.schema,
        "REDIS_URL": settings.redis.url.reveal(),
        "SHORT_DOMAIN": "s.ex.in",
        # the test's keys, as `make up` shares its own with the CLI: pseudonyms must agree
        "RECIPIENT_KEY": settings.api.recipient_key.reveal(),
        "WEBHOOK_SECRET_KEY": settings.relay.webhook_secret_key.reveal(),
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        CLICKTRACK,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("length", ["8", "17"])
async def test_link_mints_codes_of_code_length(
    settings: Settings, pool: asyncpg.Pool, length: str
) -> None:
    status, out, err = await clicktrack(
        settings,
        *("link", "https://a.example/x", "--recipient", "r1", "--recipient", "r2"),
        env={"CODE_LENGTH": length, "SHORT_BASE_URL": "http://s.ex.in"},
    )
    assert status == 0, err
    head, *lines = out.splitlines()
    made = re.fullmatch(r"link (\d+) -> https://a\.example/x", head)
    assert made is not None, out
    stored = await pool.fetch(
        "SELECT l.org_id, c.recipient_id, c.code FROM codes c JOIN links l ON l.id = c.link_id"
        " WHERE c.link_id = $1 ORDER BY c.recipient_id",
        int(made[1]),
    )
    assert [len(r["code"]) for r in stored] == [int(length)] * 2
    vault = RecipientKeys(settings.api.recipient_key).vault(stored[0]["org_id"])
    sender = {vault.pseudonym(r): r for r in ("r1", "r2")}  # codes hold pseudonyms
    assert lines == [
        f"  http://s.ex.in/{r['code']} (recipient {sender[r['recipient_id']]})" for r in stored
    ]


async def test_a_support_ticket_create_an_org_and_enable_tracking(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    status, out, _ = await clicktrack(settings, "org", "create", "Acme Retail")
    assert status == 0
    first, second = out.splitlines()
    created = re.fullmatch(r"organisation (\d+) created: Acme Retail \(link tracking off\)", first)
    assert created is not None
    org_id = int(created[1])
    key = second.removeprefix("API key (shown once, store it now): ")
    assert re.fullmatch(r"ctk_[0-9A-Za-z]{40}", key)
    stored = await pool.fetchrow("SELECT key_hash FROM api_keys WHERE org_id = $1", org_id)
    assert bytes(stored["key_hash"]) == hashlib.sha256(key.encode()).digest()
    tracking = "SELECT link_tracking_enabled FROM orgs WHERE id = $1"
    assert await pool.fetchval(tracking, org_id) is False

    status, out, _ = await clicktrack(settings, "org", "enable-tracking", "Acme Retail")
    assert (status, out) == (0, f"organisation {org_id} (Acme Retail): link tracking on\n")
    assert await pool.fetchval(tracking, org_id) is True
    status, out, _ = await clicktrack(settings, "org", "disable-tracking", str(org_id))
    assert (status, out) == (0, f"organisation {org_id} (Acme Retail): link tracking off\n")

    status, out, _ = await clicktrack(settings, "org", "show", str(org_id))
    assert out.splitlines()[0] == (
        f"organisation {org_id}: Acme Retail, link tracking off, time zone UTC"
    )
    assert key not in out and key[:10] in out

    status, out, _ = await clicktrack(settings, "org", "timezone", str(org_id), "Asia/Kolkata")
    assert (status, out) == (0, f"organisation {org_id} (Acme Retail): time zone Asia/Kolkata\n")
    assert await pool.fetchval("SELECT time_zone FROM orgs WHERE id = $1", org_id) == "Asia/Kolkata"
    status, _, err = await clicktrack(settings, "org", "timezone", str(org_id), "Mars/Olympus")
    assert status == 2 and "IANA" in err


async def test_cli_errors_are_one_line_and_exit_2(settings: Settings, pool: asyncpg.Pool) -> None:
    status, _, err = await clicktrack(settings, "org", "enable-tracking", "Nobody")
    assert (status, err) == (2, "error: no organisation is named 'Nobody'\n")
    await create_org(pool, "Twin")
    await create_org(pool, "Twin")
    status, _, err = await clicktrack(settings, "org", "enable-tracking", "Twin")
    assert status == 2 and err.startswith("error: 2 organisations are named 'Twin' (ids ")
    status, _, err = await clicktrack(settings, "org", "enable-tracking", "99999")
    assert (status, err) == (2, "error: organisation 99999 does not exist\n")


async def test_mint_from_a_file_with_a_progress_bar(settings: Settings, pool: asyncpg.Pool) -> None:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Sale", "one_time")
    link = await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination="https://a.example/x",
        code_length=settings.links.code_length,
    )
    people = [f"+9199{i:08d}" for i in range(2500)]
    stdin = ("\n".join([*people, "", people[0]]) + "\n").encode()
    status, out, err = await clicktrack(
        settings, "mint", str(link.link_id), "--recipients", "-", stdin=stdin
    )
    assert status == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["recipient", "code", "short_url"]
    assert sorted(r[0] for r in rows[1:]) == people  # in the order of their pseudonyms
    assert all(r[2] == f"s.ex.in/{r[1]}" for r in rows[1:])
    assert "minting" in err and err.endswith(f"link {link.link_id}: 2500 codes minted, 0 reused\n")
    stored = await pool.fetchval("SELECT count(*) FROM codes WHERE link_id = $1", link.link_id)
    assert stored == 2500 + 1  # and the link's shared code
    # again, as a resend would: same codes, nothing minted
    status, again, err = await clicktrack(
        settings, "mint", str(link.link_id), "--recipients", "-", stdin=stdin
    )
    assert (status, again) == (0, out)
    assert err.endswith(f"link {link.link_id}: 0 codes minted, 2500 reused\n")


async def test_operator_actions_carry_their_ticket_into_the_audit(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    steps = [
        ("org", "create", "Acme Retail", "--ticket", "SUP-100"),
        ("org", "enable-tracking", "Acme Retail", "--ticket", "SUP-101"),
        ("domain", "add", "Acme Retail", "s.acme.in", "--ticket", "SUP-102"),
        ("org", "header-in-path", "Acme Retail", "on", "--ticket", "SUP-103"),
        ("key", "create", "Acme Retail", "--name", "backup", "--ticket", "SUP-104"),
        ("org", "disable-tracking", "Acme Retail"),
    ]
    for step in steps:
        status, _, err = await clicktrack(settings, *step)
        assert status == 0, (step, err)
    org_id = await pool.fetchval("SELECT id FROM orgs WHERE name = 'Acme Retail'")
    key_id = await pool.fetchval("SELECT max(id) FROM api_keys WHERE org_id = $1", org_id)
    status, out, err = await clicktrack(settings, "key", "revoke", str(org_id), str(key_id))
    assert status == 0, err

    status, out, err = await clicktrack(settings, "audit", "--org", "Acme Retail")
    assert status == 0, err
    rows = [line.split("  ") for line in out.splitlines()]
    operator = rows[0][1]
    assert re.fullmatch(r"cli:\S+", operator)
    assert [row[2:] for row in rows] == [
        ["org.created", f"org={org_id}", "ticket=SUP-100", "name=Acme Retail"],
        ["key.issued", f"org={org_id}", "ticket=SUP-100", f"key_id={key_id - 1} name=main"],
        ["tracking.enabled", f"org={org_id}", "ticket=SUP-101", "changed=True"],
        ["domain.added", f"org={org_id}", "ticket=SUP-102", "domain=s.acme.in"],
        ["org.header_in_path", f"org={org_id}", "ticket=SUP-103", "enabled=True"],
        ["key.issued", f"org={org_id}", "ticket=SUP-104", f"key_id={key_id} name=backup"],
        ["tracking.disabled", f"org={org_id}", "ticket=-", "changed=True"],
        ["key.revoked", f"org={org_id}", "ticket=-", f"key_id={key_id}"],
    ]
    assert {row[1] for row in rows} == {operator}

    status, out, _ = await clicktrack(settings, "domain", "list", str(org_id))
    assert (status, out) == (0, "s.acme.in (default)\n")
    status, _, err = await clicktrack(settings, "domain", "add", str(org_id), "http://x.in/")
    assert (status, err.startswith("error: 'http://x.in/' is not a host name")) == (2, True)


async def test_org_purge_asks_for_yes_then_deletes_every_row_and_key_of_it(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis
) -> None:
    made = {}
    for name in ("Gone Retail", "Kept Retail"):
        org_id, _, link = await keyed_org(pool, settings, name, ["r1", "r2"], "https://a.example/x")
        await cache_codes(redis, link.code_rows(), 600)  # as the CLI and the API do
        made[name] = (org_id, link)
    gone, kept = made["Gone Retail"], made["Kept Retail"]

    status, out, err = await clicktrack(settings, "org", "purge", "Gone Retail")
    assert (status, out) == (0, f"would purge organisation {gone[0]} (Gone Retail): add --yes\n")
    assert await pool.fetchval("SELECT count(*) FROM codes") == 4  # nothing happened
    status, out, err = await clicktrack(
        settings, "org", "purge", "Gone Retail", "--yes", "--ticket", "DPDP-7"
    )
    assert status == 0, err
    # codes 2, recipients 2, links 1, campaigns 1, orgs 1; the 2 cached codes
    assert out == f"organisation {gone[0]} purged: 7 rows, 2 Redis keys\n"
    names = await pool.fetch("SELECT name FROM orgs")
    assert [r[0] for r in names] == ["Kept Retail"]
    left = await pool.fetch("SELECT link_id, count(*) FROM codes GROUP BY 1")
    assert [tuple(r) for r in left] == [(kept[1].link_id, 2)]
    assert await pool.fetchval("SELECT count(*) FROM recipients") == 2
    cached = sorted([k.decode() async for k in redis.scan_iter(match="ct:code1:*")])
    assert cached == sorted(f"ct:code1:{code}" for code in kept[1].codes.values())
    status, out, err = await clicktrack(settings, "audit")  # the trail outlives the org
    assert status == 0, err
    (row,) = [line.split("  ") for line in out.splitlines() if "org.purged" in line]
    assert row[2:4] == ["org.purged", f"org={gone[0]}"] and row[4] == "ticket=DPDP-7"
