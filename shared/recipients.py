"""Pseudonymous recipients: a sender's recipient id becomes a keyed pseudonym the moment we get it.

A sender names a recipient by a phone number or any id of its own. Minting turns it at once into
a pseudonym, HMAC-SHA256 of the id under the organisation's pseudonym key, cut to 128 bits and
written as 32 hex digits; only the pseudonym is stored in `codes` and in the visitor rows
(`r:<pseudonym>`), published on `clicks.v1` and sent to webhooks. Each organisation's keys are
derived (HKDF-SHA256) from one master key, `RECIPIENT_KEY`, and the organisation's id: no two
organisations share a key, and an organisation that knows its pseudonym key
(`GET /v1/recipients/key`) computes the same pseudonyms to join the topic with its own data.

The way back lives in one table, `recipients` (org_id, pseudonym, sealed_id): the id encrypted
with AES-256-GCM under the organisation's sealing key, with a random 96-bit nonce and the
organisation and pseudonym as associated data (a sealed id copied to another row does not open).
Only code holding `RECIPIENT_KEY` can read it, and the API reads it for the key's organisation
alone. Erasure (`shared.erasure`) deletes the row and renames the pseudonym everywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

import asyncpg

from shared.sealing import Sealer, derive
from shared.variables import Secret

PSEUDONYM_HEX = 32
"""Hex digits of a pseudonym: 128 bits, so two recipients of one organisation never collide."""


def _derive(master: bytes, purpose: str, org_id: int) -> bytes:
    return derive(master, f"clicktrack recipient {purpose} v1 org {org_id}")


class RecipientKeys:
    """The master key (`RECIPIENT_KEY`); `vault(org_id)` gives one organisation's keys."""

    __slots__ = ("_master",)

    def __init__(self, master: Secret | bytes) -> None:
        raw = master.reveal().encode() if isinstance(master, Secret) else master
        if not raw:
            raise ValueError("the recipient key is empty")
        self._master = raw

    def vault(self, org_id: int) -> RecipientVault:
        """The pseudonym and sealing keys of organisation `org_id`."""
        return RecipientVault(
            org_id,
            _derive(self._master, "pseudonym", org_id),
            _derive(self._master, "seal", org_id),
        )


class RecipientVault:
    """One organisation's recipients: pseudonyms, and the sealed way back to the sender's ids."""

    __slots__ = ("_pseudonym_key", "_sealer", "org_id")

    def __init__(self, org_id: int, pseudonym_key: bytes, seal_key: bytes) -> None:
        self.org_id = org_id
        self._pseudonym_key = pseudonym_key
        self._sealer = Sealer(seal_key)

    @property
    def pseudonym_key(self) -> bytes:
        """The organisation's pseudonym key: with it, `pseudonym` can be computed anywhere."""
        return self._pseudonym_key

    def pseudonym(self, recipient: str) -> str:
        """The pseudonym of the sender's id `recipient`: the first 128 bits of
        HMAC-SHA256(pseudonym key, UTF-8 of the id), as 32 lower-case hex digits."""
        digest = hmac.new(self._pseudonym_key, recipient.encode(), hashlib.sha256)
        return digest.hexdigest()[:PSEUDONYM_HEX]

    def seal(self, pseudonym: str, recipient: str) -> bytes:
        """The id encrypted for the `recipients` row of `pseudonym`: nonce || ciphertext+tag."""
        return self._sealer.seal(recipient.encode(), self._bound(pseudonym))

    def open(self, pseudonym: str, sealed: bytes) -> str:
        """The id sealed in the row of `pseudonym`; `ValueError` if it was not sealed there."""
        return self._sealer.open(sealed, self._bound(pseudonym)).decode()

    def _bound(self, pseudonym: str) -> bytes:
        return f"{self.org_id}:{pseudonym}".encode()

    async def remember(self, conn: asyncpg.Connection, recipients: Sequence[str]) -> list[str]:
        """The pseudonym of each id in `recipients` (distinct ids, in order), the way back to
        each stored in `recipients` (kept when there already). Must run in a transaction.

        New recipients (the first is not known) are COPYed in the order of the primary key, in
        a savepoint; if one was known after all, or for a resend, an INSERT skips the known."""
        pseudonyms = [self.pseudonym(r) for r in recipients]
        if not pseudonyms:
            return pseudonyms
        rows = sorted(
            (self.org_id, p, self.seal(p, r)) for p, r in zip(pseudonyms, recipients, strict=True)
        )
        if not await self._known(conn, rows[0][1]) and await _copy(conn, rows):
            return pseudonyms
        await conn.execute(
            "INSERT INTO recipients (org_id, pseudonym, sealed_id)"
            " SELECT $1, p, s FROM unnest($2::text[], $3::bytea[]) AS u (p, s)"
            " ORDER BY p ON CONFLICT DO NOTHING",
            self.org_id,
            [row[1] for row in rows],
            [row[2] for row in rows],
        )
        return pseudonyms

    async def _known(self, conn: asyncpg.Connection, pseudonym: str) -> bool:
        known: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM recipients WHERE org_id = $1 AND pseudonym = $2)",
            self.org_id,
            pseudonym,
        )
        return known

    async def reveal(self, conn: asyncpg.Connection, pseudonyms: Iterable[str]) -> dict[str, str]:
        """The sender's id of each pseudonym of this organisation that has one (an erased or
        unknown pseudonym is absent)."""
        rows = await conn.fetch(
            "SELECT pseudonym, sealed_id FROM recipients"
            " WHERE org_id = $1 AND pseudonym = ANY($2::text[])",
            self.org_id,
            list(pseudonyms),
        )
        return {row["pseudonym"]: self.open(row["pseudonym"], row["sealed_id"]) for row in rows}


async def _copy(conn: asyncpg.Connection, rows: list[tuple[int, str, bytes]]) -> bool:
    """COPY the rows into `recipients` in a savepoint; False if one was there already."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "recipients", records=rows, columns=["org_id", "pseudonym", "sealed_id"]
            )
    except asyncpg.UniqueViolationError:
        return False
    return True
