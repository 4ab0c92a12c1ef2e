"""Bulk minting against the real Postgres: COPY, collisions, concurrent minting, reuse."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from services.redirector.app import Redirector
from shared.codes import mint_codes
from shared.link_cache import cache_codes
from shared.links import create_campaign, create_link, create_org
from shared.minting import Minted, mint
from shared.recipients import RecipientKeys, RecipientVault
from shared.settings import Settings

pytestmark = pytest.mark.integration

DESTINATION = "https://shop.example.in/p/42?ref=sms"
LENGTH = Settings().links.code_length
"""Characters of the codes these tests mint: the setting's default."""
KEYS = RecipientKeys(b"k" * 43)


@pytest.fixture
async def link_id(pool: asyncpg.Pool) -> int:
    org_id = await create_org(pool, "Acme", tracking=True)
    campaign_id = await create_campaign(pool, org_id, "Sale", "one_time")
    created = await create_link(
        pool,
        org_id=org_id,
        campaign_id=campaign_id,
        destination=DESTINATION,
        recipients=["seed"],
        code_length=LENGTH,
        keys=KEYS,
    )
    return created.link_id


@pytest.fixture
async def vault(pool: asyncpg.Pool, link_id: int) -> RecipientVault:
    """The recipients' keys of the link's organisation."""
    return KEYS.vault(await pool.fetchval("SELECT org_id FROM links WHERE id = $1", link_id))


async def test_a_collision_with_a_stored_code_is_minted_again(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    taken = await pool.fetchval("SELECT code FROM codes WHERE link_id = $1", link_id)
    rounds: Iterator[list[str]] = iter([[taken, "AAAAAAAAAA", taken], ["BBBBBBBBBB", "CCCCCCCCCC"]])
    async with pool.acquire() as conn:
        got = await mint(
            conn,
            link_id,
            ["a", "b", "c"],
            generate=lambda n, length: next(rounds),
            length=LENGTH,
            vault=vault,
        )
    # COPY aborted on the taken code; the careful path kept one fresh code and minted again for
    # the two recipients paired with the taken one
    assert sorted(got.by_recipient()) == ["a", "b", "c"]  # type: ignore[type-var]
    assert sorted(got.by_recipient().values()) == ["AAAAAAAAAA", "BBBBBBBBBB", "CCCCCCCCCC"]
    assert (got.minted, got.reused) == (3, 0)
    rows = await pool.fetch(
        "SELECT recipient_id, code FROM codes WHERE link_id = $1 ORDER BY recipient_id", link_id
    )
    stored = {r["recipient_id"]: r["code"] for r in rows}
    assert stored == {
        vault.pseudonym(r): code for r, code in {"seed": taken, **got.by_recipient()}.items()
    }


async def test_a_failed_mint_leaves_nothing_behind(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    taken = await pool.fetchval("SELECT code FROM codes WHERE link_id = $1", link_id)

    def generate(count: int, length: int) -> list[str]:
        if count == 3:  # the first round: one fresh code goes in, two collide
            return [taken, "EEEEEEEEEE", taken]
        raise RuntimeError("entropy ran out")

    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="entropy ran out"):
            await mint(
                conn, link_id, ["a", "b", "c"], generate=generate, length=LENGTH, vault=vault
            )
    # the code inserted before the failure was rolled back with the rest
    assert await pool.fetchval("SELECT count(*) FROM codes WHERE link_id = $1", link_id) == 1


async def test_a_collision_inside_one_batch_is_minted_again(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    rounds = iter([["CCCCCCCCCC", "CCCCCCCCCC"], ["DDDDDDDDDD"]])
    async with pool.acquire() as conn:
        got = await mint(
            conn,
            link_id,
            ["x", "y"],
            generate=lambda n, length: next(rounds),
            length=LENGTH,
            vault=vault,
        )
    assert sorted(got.by_recipient().values()) == ["CCCCCCCCCC", "DDDDDDDDDD"]


async def test_concurrent_mints_agree_on_one_code_per_recipient(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    batches = [[f"r{i}" for i in range(start, start + 3000)] for start in (0, 1000, 2000, 500)]

    async def one(recipients: list[str]) -> dict[str | None, str]:
        async with pool.acquire() as conn:
            return (
                await mint(conn, link_id, recipients, length=LENGTH, vault=vault)
            ).by_recipient()

    results = await asyncio.gather(*(one(b) for b in batches))
    stored = {
        r["recipient_id"]: r["code"]
        for r in await pool.fetch(
            "SELECT recipient_id, code FROM codes WHERE link_id = $1", link_id
        )
    }
    assert len(stored) == 1 + 5000  # "seed" + r0..r4999
    for got in results:
        assert all(stored[vault.pseudonym(r)] == code for r, code in got.items())  # type: ignore[arg-type]


async def test_minting_is_idempotent_and_the_shared_code_is_one(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    async with pool.acquire() as conn:
        first = await mint(conn, link_id, [None, "seed", "n1", "n1"], length=LENGTH, vault=vault)
        again = await mint(conn, link_id, ["n1", None], length=LENGTH, vault=vault)
    assert (first.minted, first.reused) == (2, 1)
    assert (again.minted, again.reused) == (0, 2)
    before = first.by_recipient()
    assert again.by_recipient() == {"n1": before["n1"], None: before[None]}
    # in the order of their pseudonyms (the order the rows went in), the shared code last
    assert first.recipients == [*sorted(["n1", "seed"], key=vault.pseudonym), None]
    async with pool.acquire() as conn:
        assert await mint(conn, link_id, [], length=LENGTH, vault=vault) == Minted([], [], 0, 0)


async def test_known_recipients_keep_their_sealed_id_among_new_ones(
    pool: asyncpg.Pool, link_id: int, vault: RecipientVault
) -> None:
    """New recipients go into `recipients` by COPY; when one of them is known (not the first in
    pseudonym order, so the COPY is refused), the known keeps its row and the rest go in."""
    people = [f"+9198000{i:05d}" for i in range(40)]
    by_pseudonym = sorted(people, key=vault.pseudonym)
    known = by_pseudonym[-1]  # the last in the COPY's order: its row makes the COPY fail
    async with pool.acquire() as conn:
        await mint(conn, link_id, [known], length=LENGTH, vault=vault)
        sealed = await conn.fetchval(
            "SELECT sealed_id FROM recipients WHERE pseudonym = $1", vault.pseudonym(known)
        )
        got = await mint(conn, link_id, people, length=LENGTH, vault=vault)
        rows = dict(
            await conn.fetch(
                "SELECT pseudonym, sealed_id FROM recipients WHERE pseudonym = ANY($1::text[])",
                [vault.pseudonym(p) for p in people],
            )
        )
        assert (got.minted, got.reused) == (39, 1)
        assert len(rows) == 40
        assert rows[vault.pseudonym(known)] == sealed  # kept, not sealed again
        assert await vault.reveal(conn, [vault.pseudonym(p) for p in people]) == {
            vault.pseudonym(p): p for p in people
        }


def test_bulk_codes_are_uniform_base62() -> None:
    codes = mint_codes(20_000, 12)
    assert len(codes) == 20_000 and all(re.fullmatch(r"[0-9A-Za-z]{12}", c) for c in codes)
    counts: dict[str, int] = {}
    for ch in "".join(codes):
        counts[ch] = counts.get(ch, 0) + 1
    expected = 20_000 * 12 / 62  # ~3871 per character
    assert len(counts) == 62
    assert all(abs(n - expected) < 6 * expected**0.5 for n in counts.values())


@pytest.fixture
async def redirector(
    settings: Settings, pool: asyncpg.Pool, redis: aioredis.Redis, topics: list[str]
) -> AsyncIterator[str]:
    running = Redirector(settings)
    await running.start("127.0.0.1", 0)
    yield running.url
    await running.stop()


async def test_bulk_minted_codes_resolve_in_the_redirector(
    pool: asyncpg.Pool,
    link_id: int,
    redirector: str,
    redis: aioredis.Redis,
    vault: RecipientVault,
) -> None:
    async with pool.acquire() as conn:
        got = await mint(conn, link_id, [f"p{i}" for i in range(50)], length=LENGTH, vault=vault)
    # As the API and the CLI do once the codes are committed: the running redirector's filter
    # of minted codes learns them (else it would refuse them as never minted) and Redis has them.
    rows = [(c, link_id, r) for r, c in got.by_recipient().items()]
    await cache_codes(redis, rows, Settings().links.code_cache_ttl_s)
    async with aiohttp.ClientSession() as http:
        for code in list(got.by_recipient().values())[:5]:
            async with http.get(f"{redirector}/{code}", allow_redirects=False) as resp:
                assert (resp.status, resp.headers["Location"]) == (302, DESTINATION)
