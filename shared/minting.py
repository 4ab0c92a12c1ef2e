"""Bulk minting of short codes: one per (link, recipient), by COPY, safe under concurrency.

The fast path COPYs every new (code, link, recipient) row straight into `codes` inside a
savepoint. COPY has no ON CONFLICT, so if a random code collides with a stored one, or another
request minted one of these recipients meanwhile, the unique indexes abort the COPY; the careful
path then stages the rows in a temporary table and inserts them with `ON CONFLICT DO NOTHING`,
reads back the codes that other requests minted, and mints again for the rest. Either way each
recipient ends up with exactly one code, and asking again returns the same code (a resend reuses
it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat

import asyncpg

from shared.codes import CODE_LENGTH, mint_codes
from shared.errors import DependencyError, InvalidInputError

MAX_RECIPIENT = 128
"""Longest recipient id, characters."""
_TRIES = 5
_COLUMNS = ["code", "link_id", "recipient_id"]

Recipient = str | None
"""A recipient id (a customer id or phone number), or None for the link's shared code."""


@dataclass(frozen=True, slots=True)
class Minted:
    """Codes of a link for some recipients."""

    codes: dict[Recipient, str]
    """Recipient -> code, in the order the recipients were first given."""
    minted: int
    """Codes created by this call."""
    reused: int
    """Recipients that already had a code on this link."""


def check_recipient(recipient: object, index: int = 0) -> Recipient:
    """A recipient id as given, or `InvalidInputError` naming its index."""
    if recipient is None:
        return None
    if (
        not isinstance(recipient, str)
        or not 0 < len(recipient) <= MAX_RECIPIENT
        or not recipient.isprintable()
    ):
        raise InvalidInputError(
            f"recipient {index} must be a string of 1 to {MAX_RECIPIENT} printable characters",
            code="invalid_recipient",
            index=index,
        )
    return recipient


async def mint(
    conn: asyncpg.Connection,
    link_id: int,
    recipients: Sequence[Recipient],
    *,
    length: int = CODE_LENGTH,
    generate: Callable[[int, int], list[str]] = mint_codes,
) -> Minted:
    """The code of each recipient on `link_id`, minting the missing ones, all in one transaction
    (a savepoint inside the caller's). Duplicate recipients share one code. `generate(count,
    length)` makes the candidate codes."""
    wanted = list(dict.fromkeys(check_recipient(r, i) for i, r in enumerate(recipients)))
    async with conn.transaction():
        return await _mint(conn, link_id, wanted, length, generate)


async def _mint(
    conn: asyncpg.Connection,
    link_id: int,
    wanted: list[Recipient],
    length: int,
    generate: Callable[[int, int], list[str]],
) -> Minted:
    existing: dict[Recipient, str] = {}
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM codes WHERE link_id = $1)", link_id):
        existing = await _existing(conn, link_id, wanted)
    todo = [r for r in wanted if r not in existing]
    fresh: dict[Recipient, str] = {}
    for attempt in range(_TRIES):
        if not todo:
            break
        rows = list(zip(generate(len(todo), length), repeat(link_id), todo, strict=False))
        if attempt == 0:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table("codes", records=rows, columns=_COLUMNS)
            except asyncpg.UniqueViolationError:
                pass
            else:
                fresh.update((r, code) for code, _, r in rows)
                todo = []
                break
        fresh.update(await _insert_skipping_conflicts(conn, rows))
        rest = [r for r in todo if r not in fresh]
        existing.update(await _existing(conn, link_id, rest))
        todo = [r for r in rest if r not in existing]
    if todo:
        raise DependencyError(f"{_TRIES} rounds of code collisions: the code space is exhausted")
    codes = {r: fresh[r] if r in fresh else existing[r] for r in wanted}
    return Minted(codes=codes, minted=len(fresh), reused=len(wanted) - len(fresh))


async def _existing(
    conn: asyncpg.Connection, link_id: int, recipients: list[Recipient]
) -> dict[Recipient, str]:
    named = [r for r in recipients if r is not None]
    found: dict[Recipient, str] = {}
    if named:
        rows = await conn.fetch(
            "SELECT recipient_id, code FROM codes WHERE link_id = $1 AND recipient_id = ANY($2)",
            link_id,
            named,
        )
        found.update((r["recipient_id"], r["code"]) for r in rows)
    if None in recipients:
        shared = await conn.fetchval(
            "SELECT code FROM codes WHERE link_id = $1 AND recipient_id IS NULL", link_id
        )
        if shared is not None:
            found[None] = shared
    return found


async def _insert_skipping_conflicts(
    conn: asyncpg.Connection, rows: list[tuple[str, int, Recipient]]
) -> dict[Recipient, str]:
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS mint_stage"
        " (code text, link_id bigint, recipient_id text) ON COMMIT DROP"
    )
    await conn.execute("TRUNCATE mint_stage")
    await conn.copy_records_to_table("mint_stage", records=rows, columns=_COLUMNS)
    inserted = await conn.fetch(
        "INSERT INTO codes (code, link_id, recipient_id)"
        " SELECT code, link_id, recipient_id FROM mint_stage"
        " ON CONFLICT DO NOTHING RETURNING recipient_id, code"
    )
    return {r["recipient_id"]: r["code"] for r in inserted}
