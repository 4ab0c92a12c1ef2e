"""Erasures and purges applied to late events: the counter's side of `shared.erasure`.

An event already on the topic when a recipient is erased carries the old pseudonym; one of a
purged organisation carries its ids. Each counting transaction first calls
`privacy_tombstones_version()` (migration 0080), which waits for an erasure being written and
holds the next one until the batch commits; the batch is then counted with every tombstone
committed before it: an erased recipient's clicks count for the random pseudonym that replaced
its old one (the same visitor, so uniques stay exact and nothing points back to the person), and
a purged organisation's clicks are dropped. Only the clicks of codes the erasure renamed are
renamed: the same id gives the same pseudonym, so a recipient added again after the erasure gets
a new code for the old pseudonym, and is counted as the new person they are. The tombstones are
cached here and read again only when the version (the highest tombstone id) moves.

An event published before the ids stored as given were pseudonymised (`clicktrack migrate`,
migration 0080) and counted after it carries the sender's id, which is not a pseudonym's
32 hex digits: its recipient is read from its code, which holds the pseudonym by then, so no
visitor row gets the id and the recipient stays one visitor.
"""

from __future__ import annotations

import asyncpg

from services.counter.intake import Click
from shared.recipients import PSEUDONYM_HEX


class Tombstones:
    """The tombstones this counter knows, refreshed inside each counting transaction."""

    def __init__(self) -> None:
        self._version = 0
        self._purged: set[int] = set()
        self._renamed: dict[tuple[int, str], str] = {}
        """(org id, `r:<old pseudonym>`) -> `r:<replacement>`."""

    async def apply(self, conn: asyncpg.Connection, clicks: list[Click]) -> list[Click]:
        """`clicks` with the tombstones applied: purged organisations' clicks dropped, erased
        recipients renamed. Must run inside the transaction that counts them."""
        version: int = await conn.fetchval("SELECT privacy_tombstones_version()")
        if version != self._version:
            await self._load(conn, version)
        clicks = await _pseudonymise(conn, clicks)
        if not self._purged and not self._renamed:
            return clicks
        purged, renamed = self._purged, self._renamed
        kept: list[Click] = []
        erased: list[int] = []  # clicks carrying an erased pseudonym: renamed below
        for click in clicks:
            if click.org_id in purged:
                continue
            if click.visitor[:2] == "r:" and (click.org_id, click.visitor) in renamed:
                erased.append(len(kept))
            kept.append(click)
        if erased:
            await _rename(conn, kept, erased, renamed)
        return kept

    async def _load(self, conn: asyncpg.Connection, version: int) -> None:
        since = self._version if version > self._version else 0  # lower: some were pruned
        if since == 0:
            self._purged, self._renamed = set(), {}
        rows = await conn.fetch(
            "SELECT org_id, pseudonym, replacement FROM privacy_tombstones WHERE id > $1", since
        )
        for org_id, pseudonym, replacement in rows:
            if pseudonym is None:
                self._purged.add(org_id)
            else:
                self._renamed[(org_id, f"r:{pseudonym}")] = f"r:{replacement}"
        self._version = version


async def _rename(
    conn: asyncpg.Connection,
    clicks: list[Click],
    erased: list[int],
    renamed: dict[tuple[int, str], str],
) -> None:
    """Give the clicks at `erased` (in place) their recipient's new name: the visitor and the
    per-recipient clicks. Only a code the erasure renamed was the erased person's: a pseudonym
    is the same for the same id, so a recipient added again after an erasure (a new code,
    minted for the same pseudonym since) is a new person, whose clicks keep their name."""
    rows = await conn.fetch(
        "SELECT code, recipient_id FROM codes WHERE code = ANY($1::text[])",
        [clicks[i].code for i in erased],
    )
    holder = {code: recipient for code, recipient in rows}
    for i in erased:
        click = clicks[i]
        if holder.get(click.code, "") == click.recipient:
            continue  # minted for this pseudonym after the erasure
        new = renamed[(click.org_id, click.visitor)]
        clicks[i] = click._replace(visitor=new, recipient=new[2:])


async def _pseudonymise(conn: asyncpg.Connection, clicks: list[Click]) -> list[Click]:
    """`clicks` with each recipient that is not a pseudonym (an event from before migration
    0080) replaced by the one its code holds now."""
    legacy = [c.code for c in clicks if c.recipient is not None and len(c.recipient) != _HEX]
    if not legacy:
        return clicks
    rows = await conn.fetch(
        "SELECT code, recipient_id FROM codes WHERE code = ANY($1::text[])", legacy
    )
    now = {code: r for code, r in rows if r is not None and len(r) == _HEX}
    return [
        c._replace(recipient=now[c.code], visitor=f"r:{now[c.code]}")
        if c.recipient is not None and len(c.recipient) != _HEX and c.code in now
        else c
        for c in clicks
    ]


_HEX = PSEUDONYM_HEX
