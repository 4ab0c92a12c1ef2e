"""API keys: high-entropy secrets shown once; only their SHA-256 is stored.

A key is `ctk_` followed by 40 base62 characters (about 238 bits from the CSPRNG), so a plain
SHA-256 is enough: there is nothing to brute-force that a slow hash would protect. Looking a key
up by its hash also means the comparison never runs over the secret itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared import db
from shared.codes import mint_code
from shared.orgs import Owned, clean_name

KEY_PREFIX = "ctk_"
_KEY_BODY = 40
_SHOWN = len(KEY_PREFIX) + 6
_COLUMNS = "id, org_id, name, prefix, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record (never the key itself)."""

    id: int
    org_id: int
    name: str
    prefix: str
    """The key's first characters, to tell keys apart in listings."""
    created_at: datetime
    revoked_at: datetime | None


_KEYS = Owned("api_keys", ApiKey, _COLUMNS, "API key")


def hash_key(key: str) -> bytes:
    """SHA-256 of the key's UTF-8 bytes (32 bytes)."""
    return hashlib.sha256(key.encode()).digest()


async def create_api_key(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, name: str
) -> tuple[ApiKey, str]:
    """A new key for the organisation: its record, and the key (shown to the caller once)."""
    key = KEY_PREFIX + mint_code(_KEY_BODY)
    row = await conn.fetchrow(
        "INSERT INTO api_keys (org_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4)"
        f" RETURNING {_COLUMNS}",
        org_id,
        clean_name(name, "key name"),
        key[:_SHOWN],
        hash_key(key),
    )
    return ApiKey(**dict(row)), key


async def org_of_key(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> int | None:
    """The organisation of a live (not revoked) key, or None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) != len(KEY_PREFIX) + _KEY_BODY:
        return None
    org_id: int | None = await conn.fetchval(
        "SELECT org_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", hash_key(key)
    )
    return org_id


async def list_api_keys(conn: asyncpg.Connection | asyncpg.Pool, org_id: int) -> list[ApiKey]:
    """The organisation's keys, revoked ones included, oldest first."""
    return await _KEYS.all(conn, org_id)


async def revoke_api_key(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, key_id: int
) -> ApiKey:
    """Revoke one of the organisation's keys (idempotent); `NotFoundError` if not its key."""
    return await db.fetch_one(
        conn,
        ApiKey,
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
        f" WHERE id = $1 AND org_id = $2 RETURNING {_COLUMNS}",
        key_id,
        org_id,
        missing=f"API key {key_id} does not exist",
    )
