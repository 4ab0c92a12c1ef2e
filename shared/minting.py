"""Bulk minting of short codes: one per (link, recipient), by COPY, safe under concurrency.

The fast path COPYs every (code, link, recipient) row straight into `codes` inside a savepoint.
COPY has no ON CONFLICT, so if a random code collides with a stored one, a recipient is given
twice, or a recipient has a code on this link already (a resend, a repeated request, a concurrent
one), the unique indexes abort the COPY (a resend is recognised up front by one probe). The
careful path then stages the rows in a temporary table, inserts those of recipients without a
code with `ON CONFLICT DO NOTHING`, reads back the codes that were there before, and mints again
for the rest. Either way each recipient ends up with exactly one code, and asking again returns
the same code (a resend reuses it).

Recipients are stored as pseudonyms (`shared.recipients`): `mint` turns the sender's ids into
their pseudonyms (and keeps the sealed way back) before any code is written, so no id reaches
`codes` as given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import cast

import asyncpg

from shared.codes import mint_codes
from shared.errors import ClicktrackError, InvalidInputError
from shared.link_cache import CodeRow
from shared.recipients import RecipientVault

MAX_RECIPIENT = 128
"""Longest recipient id, characters."""
_TRIES = 5
_COLUMNS = ["code", "link_id", "recipient_id"]

Recipient = str | None
"""A recipient id (a customer id or phone number), or None for the link's shared code."""


@dataclass(frozen=True, slots=True)
class Minted:
    """Codes of a link for some recipients."""

    recipients: list[Recipient]
    """Each recipient once (the sender's ids), in the order of their pseudonyms, the shared
    code (None) last."""
    codes: list[str]
    """The code of each recipient, in the same order."""
    minted: int
    """Codes created by this call."""
    reused: int
    """Recipients that already had a code on this link."""
    pseudonyms: list[Recipient] = field(default_factory=list)
    """The pseudonym each code carries, in the same order (what `codes` holds): the only form
    of a recipient that may be cached, published or logged."""

    def by_recipient(self) -> dict[Recipient, str]:
        """Recipient -> code."""
        return dict(zip(self.recipients, self.codes, strict=True))

    def code_rows(self, link_id: int) -> list[CodeRow]:
        """(code, link id, pseudonym) of each code, as `link_cache.cache_codes` takes them."""
        return list(zip(self.codes, repeat(link_id), self.pseudonyms, strict=False))


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


def check_recipients(recipients: Sequence[object]) -> list[Recipient]:
    """The recipients, each checked as `check_recipient` does; the common case (all valid) is
    checked a million at a time by C-level operations rather than one by one."""
    named = [r for r in recipients if r is not None]
    if set(map(type, named)) <= {str}:
        texts = cast("list[str]", named)
        lengths = list(map(len, texts))
        if (
            "".join(texts).isprintable()
            and min(lengths, default=1) > 0
            and max(lengths, default=0) <= MAX_RECIPIENT
        ):
            return cast("list[Recipient]", list(recipients))
    return [check_recipient(r, i) for i, r in enumerate(recipients)]


async def mint(
    conn: asyncpg.Connection,
    link_id: int,
    recipients: Sequence[object],
    *,
    length: int,
    vault: RecipientVault | None,
    generate: Callable[[int, int], list[str]] = mint_codes,
) -> Minted:
    """The code of each recipient on `link_id`, minting the missing ones, all in one transaction
    (a savepoint inside the caller's). Codes are `length` characters (`LinkSettings.code_length`);
    `vault` is the link's organisation's (`RecipientKeys.vault`; None only when no recipient is
    named): the codes carry the recipients' pseudonyms; `generate(count, length)` makes the
    candidate codes.

    The answer lists each recipient once, in the order of their pseudonyms with the shared code
    (None) last: the order the rows are written in, the cheapest for a million recipients.
    """
    checked = check_recipients(recipients)
    named = list(dict.fromkeys(r for r in checked if r is not None))
    if named and vault is None:
        raise ValueError("recipients need their organisation's vault to become pseudonyms")
    async with conn.transaction():
        pseudonyms = await vault.remember(conn, named) if vault else []
        sender_id: dict[Recipient, Recipient] = dict(zip(pseudonyms, named, strict=True))
        sender_id[None] = None
        todo: list[Recipient] = [*sorted(pseudonyms)]
        if None in checked:
            todo.append(None)
        done = await _mint(conn, link_id, todo, length, generate)
    return Minted(
        recipients=list(map(sender_id.__getitem__, done.recipients)),
        codes=done.codes,
        minted=done.minted,
        reused=done.reused,
        pseudonyms=done.recipients,
    )


async def _mint(
    conn: asyncpg.Connection,
    link_id: int,
    todo: list[Recipient],
    length: int,
    generate: Callable[[int, int], list[str]],
) -> Minted:
    # Sorted codes paired with sorted recipients: both unique indexes then take their new
    # entries in order, which is what makes a million-row COPY fast (random-order inserts into
    # a B-tree cost Postgres far more CPU: docs/operations.md). The pairing reveals nothing useful:
    # codes stay uniformly random, and finding the code next to a known one takes as many
    # guesses as finding any live code (code space / live codes).
    if not todo:
        return Minted(recipients=[], codes=[], minted=0, reused=0)
    candidates = _candidates(generate, len(todo), length)
    # A resend asks again for recipients that have codes: one probe spares it a doomed COPY.
    if not await _has_code(conn, link_id, todo[0]) and await _copy(
        conn, _rows(candidates, link_id, todo)
    ):
        return Minted(recipients=todo, codes=candidates, minted=len(todo), reused=0)
    # Careful path: duplicates in the request, codes already there, or a code collision.
    order = todo = list(dict.fromkeys(todo))
    if len(todo) != len(candidates):  # else the refused candidates, never stored, serve again
        candidates = _candidates(generate, len(todo), length)
    found: dict[Recipient, str] = {}
    minted = 0
    for _ in range(_TRIES):
        staged = dict(zip(todo, candidates, strict=True))
        inserted, existing, unplaced = await _insert_skipping_conflicts(
            conn, link_id, _rows(candidates, link_id, todo), staged.get(None, "")
        )
        minted += inserted
        staged.update(existing)
        for recipient in unplaced:
            del staged[recipient]
        found.update(staged)
        if not unplaced:
            break
        todo = sorted(r for r in unplaced if r is not None) + [None] * (None in unplaced)
        candidates = _candidates(generate, len(todo), length)
    else:
        raise ClicktrackError(
            f"{_TRIES} rounds of code collisions: the code space is nearly full; raise CODE_LENGTH",
            code="code_space_exhausted",
        )
    codes = list(map(found.__getitem__, order))
    return Minted(recipients=order, codes=codes, minted=minted, reused=len(order) - minted)


def _candidates(generate: Callable[[int, int], list[str]], count: int, length: int) -> list[str]:
    candidates = sorted(generate(count, length))
    if len(candidates) != count:
        raise ValueError(f"asked for {count} codes, got {len(candidates)}")
    return candidates


Row = tuple[str, int, Recipient]


def _rows(codes: list[str], link_id: int, recipients: list[Recipient]) -> Iterator[Row]:
    # An iterator of tuples made in C: no list of a million rows to build first.
    return zip(codes, repeat(link_id), recipients)


async def _has_code(conn: asyncpg.Connection, link_id: int, recipient: Recipient) -> bool:
    query = "SELECT EXISTS (SELECT 1 FROM codes WHERE link_id = $1 AND recipient_id {})"
    if recipient is None:
        found: bool = await conn.fetchval(query.format("IS NULL"), link_id)
    else:
        found = await conn.fetchval(query.format("= $2"), link_id, recipient)
    return found


async def _copy(conn: asyncpg.Connection, rows: Iterable[Row]) -> bool:
    """COPY the rows into `codes` in a savepoint; False if a unique index refused one."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table("codes", records=rows, columns=_COLUMNS)
    except asyncpg.UniqueViolationError:
        return False
    return True


async def _insert_skipping_conflicts(
    conn: asyncpg.Connection, link_id: int, rows: Iterable[Row], shared_candidate: str
) -> tuple[int, dict[Recipient, str], set[Recipient]]:
    """Stage the rows and insert those of recipients without a code, skipping conflicts.

    Returns how many rows went in; the code of each staged recipient that had one already (from
    before, or from a concurrent request that committed meanwhile); and the staged recipients
    left without a code (their candidate collided): those need new candidates.
    `shared_candidate` is the staged code of the shared (None) recipient, "" if none is staged.
    """
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS mint_stage"
        " (code text, link_id bigint, recipient_id text) ON COMMIT DROP"
    )
    await conn.execute("TRUNCATE mint_stage")
    await conn.copy_records_to_table("mint_stage", records=rows, columns=_COLUMNS)
    await conn.execute("ANALYZE mint_stage")  # a million rows deserve a hash join
    # The anti-join spares the unique indexes a conflicting probe per known recipient.
    status = await conn.execute(
        "INSERT INTO codes (code, link_id, recipient_id)"
        " SELECT s.code, s.link_id, s.recipient_id FROM mint_stage s WHERE NOT EXISTS"
        " (SELECT 1 FROM codes c WHERE c.link_id = s.link_id AND c.recipient_id = s.recipient_id)"
        " ON CONFLICT DO NOTHING"
    )
    # One pass: a recipient whose stored code is not the staged one had it before; one with no
    # code lost its candidate to a collision. Arrays come back far faster than a million rows.
    known, codes, lost = await conn.fetchrow(
        "SELECT coalesce(array_agg(s.recipient_id) FILTER (WHERE c.code <> s.code), '{}'),"
        " coalesce(array_agg(c.code) FILTER (WHERE c.code <> s.code), '{}'),"
        " coalesce(array_agg(s.recipient_id) FILTER (WHERE c.code IS NULL), '{}')"
        " FROM mint_stage s LEFT JOIN codes c"
        " ON c.link_id = s.link_id AND c.recipient_id = s.recipient_id"
        " WHERE s.recipient_id IS NOT NULL"
    )
    existing: dict[Recipient, str] = dict(zip(known, codes, strict=True))
    unplaced: set[Recipient] = set(lost)
    if shared_candidate:
        code = await conn.fetchval(
            "SELECT code FROM codes WHERE link_id = $1 AND recipient_id IS NULL", link_id
        )
        if code is None:
            unplaced.add(None)
        elif code != shared_candidate:
            existing[None] = code
    return int(status.rsplit(" ", 1)[1]), existing, unplaced
