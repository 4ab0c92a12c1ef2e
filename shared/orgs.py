"""Organisations: who owns campaigns and API keys, whether their links are tracked, and the time
zone their reports count days and hours in."""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import asyncpg

from shared import audit, db
from shared.errors import InvalidInputError, NotFoundError, TrackingDisabledError

R = TypeVar("R")

MAX_NAME = 200
"""Longest organisation or campaign name, characters."""

_COLUMNS = (
    "id, name, link_tracking_enabled, created_at, tracking_changed_at, header_in_path,"
    " dlt_whitelist_check, time_zone"
)


def _missing(org_id: int) -> str:
    """What an answer says of an organisation that does not exist (or is not the caller's)."""
    return f"organisation {org_id} does not exist"


@dataclass(frozen=True, slots=True)
class Org:
    """An organisation (a customer of Clicktrack)."""

    id: int
    name: str
    link_tracking_enabled: bool
    """False until an operator switches tracking on; while false, links pass through untouched."""
    created_at: datetime
    tracking_changed_at: datetime | None
    """When an operator last switched tracking on or off; null if never."""
    header_in_path: bool
    """Short links carry the campaign's DLT header: `s.brand.in/ABCDEF/7383936D89`."""
    dlt_whitelist_check: bool
    """Rendering refuses links the organisation's DLT whitelist lacks (`shared.whitelist`)."""
    time_zone: str = "UTC"
    """IANA name of the zone its reports count hours and days in (an operator sets it)."""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def is_zone(name: str) -> bool:
    """True for an IANA time zone name this process knows (and `UTC`)."""
    return name in _zone_names()


def check_time_zone(name: object) -> str:
    """`name` if it is an IANA time zone name (`Asia/Kolkata`, `UTC`), else `InvalidInputError`."""
    if not isinstance(name, str) or not is_zone(name):
        shown = repr(name)[:64]
        raise InvalidInputError(
            f"time zone must be an IANA name such as UTC or Asia/Kolkata, got {shown}",
            code="invalid_tz",
        )
    return name


async def set_time_zone(conn: asyncpg.Connection | asyncpg.Pool, org_id: int, zone: str) -> Org:
    """Set the organisation's time zone (an operator's decision); returns the organisation."""
    return await db.fetch_one(
        conn,
        Org,
        f"UPDATE orgs SET time_zone = $2 WHERE id = $1 RETURNING {_COLUMNS}",
        org_id,
        check_time_zone(zone),
        missing=_missing(org_id),
    )


def clean_name(name: object, what: str = "name") -> str:
    """A trimmed, printable name of 1 to 200 characters, or `InvalidInputError`."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{what} must be a non-empty string", code="invalid_name")
    name = name.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidInputError(
            f"{what} must be at most {MAX_NAME} printable characters", code="invalid_name"
        )
    return name


@dataclass(frozen=True, slots=True)
class Owned(Generic[R]):
    """A table whose rows belong to organisations (its `org_id` column), read as `record`s (a
    dataclass of the `columns`). Another organisation's row is reported exactly like a missing
    one (`NotFoundError`), so ids reveal nothing across organisations."""

    table: str
    record: Callable[..., R]
    columns: str
    noun: str
    """What a row is called in an answer: `link 7 does not exist`."""
    order: str = "id"
    """The order of an organisation's rows (SQL)."""

    async def one(self, conn: asyncpg.Connection | asyncpg.Pool, row_id: int, org_id: int) -> R:
        """The row whose `id` is `row_id`, if organisation `org_id` owns it."""
        sql = f"SELECT {self.columns} FROM {self.table} WHERE id = $1 AND org_id = $2"
        missing = f"{self.noun} {row_id} does not exist"
        return await db.fetch_one(conn, self.record, sql, row_id, org_id, missing=missing)

    async def delete(
        self,
        conn: asyncpg.Connection,
        key: object,
        org_id: int,
        *,
        column: str = "id",
        missing: str = "",
    ) -> R:
        """Delete the row whose `column` is `key`, if organisation `org_id` owns it, and return
        it; else `NotFoundError` (`missing`, or as `one` says it)."""
        sql = (
            f"DELETE FROM {self.table} WHERE {column} = $1 AND org_id = $2 RETURNING {self.columns}"
        )
        missing = missing or f"{self.noun} {key} does not exist"
        return await db.fetch_one(conn, self.record, sql, key, org_id, missing=missing)

    async def all(self, conn: asyncpg.Connection | asyncpg.Pool, org_id: int) -> list[R]:
        """Every row organisation `org_id` owns, in `order`."""
        sql = f"SELECT {self.columns} FROM {self.table} WHERE org_id = $1 ORDER BY {self.order}"
        return await db.fetch_all(conn, self.record, sql, org_id)


async def create_org(
    conn: asyncpg.Connection | asyncpg.Pool, name: str, *, tracking: bool = False
) -> int:
    """Create an organisation (tracking off unless `tracking`); returns its id."""
    org_id: int = await conn.fetchval(
        "INSERT INTO orgs (name, link_tracking_enabled, tracking_changed_at)"
        " VALUES ($1, $2, CASE WHEN $2 THEN now() END) RETURNING id",
        clean_name(name),
        tracking,
    )
    return org_id


async def get_org(conn: asyncpg.Connection | asyncpg.Pool, org_id: int) -> Org:
    """The organisation, or `NotFoundError`."""
    sql = f"SELECT {_COLUMNS} FROM orgs WHERE id = $1"
    return await db.fetch_one(conn, Org, sql, org_id, missing=_missing(org_id))


async def list_orgs(
    conn: asyncpg.Connection | asyncpg.Pool, *, after_id: int = 0, limit: int = 100
) -> list[Org]:
    """Organisations by id, `limit` of them after `after_id` (keyset pagination)."""
    sql = f"SELECT {_COLUMNS} FROM orgs WHERE id > $1 ORDER BY id LIMIT $2"
    return await db.fetch_all(conn, Org, sql, after_id, limit)


async def set_link_tracking(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, enabled: bool
) -> Org:
    """Switch link tracking on or off (an operator's decision); returns the organisation."""
    return await db.fetch_one(
        conn,
        Org,
        "UPDATE orgs SET link_tracking_enabled = $2,"
        " tracking_changed_at = CASE WHEN link_tracking_enabled = $2 THEN tracking_changed_at"
        " ELSE now() END"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        org_id,
        enabled,
        missing=_missing(org_id),
    )


async def require_tracking(conn: asyncpg.Connection, org_id: int) -> None:
    """Pass when the organisation's link tracking is on, else `TrackingDisabledError`.

    Call it inside the transaction that mints: the row stays share-locked until that commits,
    so an operator switching tracking off waits for it, and nothing is minted after the switch.
    """
    enabled = await conn.fetchval(
        "SELECT link_tracking_enabled FROM orgs WHERE id = $1 FOR SHARE", org_id
    )
    if enabled is None:
        raise NotFoundError(_missing(org_id))
    if not enabled:
        raise TrackingDisabledError(
            "link tracking is off for this organisation: no tracked link or code is created"
            " (an operator switches it on through a support ticket)"
        )


SWITCHES = ("header_in_path", "dlt_whitelist_check")
"""The organisation's switches an operator sets with `set_switch`."""


async def set_switch(
    conn: asyncpg.Connection | asyncpg.Pool, org_id: int, switch: str, enabled: bool
) -> Org:
    """Set one of `SWITCHES`: whether the organisation's short links carry the DLT header in
    their path, or whether rendering checks links against its DLT whitelist."""
    if switch not in SWITCHES:
        raise ValueError(f"no such switch {switch!r}")  # a bug: fixed names, no SQL from input
    sql = f"UPDATE orgs SET {switch} = $2 WHERE id = $1 RETURNING {_COLUMNS}"
    return await db.fetch_one(conn, Org, sql, org_id, enabled, missing=_missing(org_id))


async def switch(
    pool: asyncpg.Pool,
    org_id: int,
    name: str,
    enabled: bool,
    *,
    operator: str,
    ticket: str | None,
    action: audit.Action,
    before: Callable[[asyncpg.Connection, int], Awaitable[None]] | None = None,
) -> Org:
    """An operator sets one of `SWITCHES`, recorded in the audit trail as `action`; `before`
    (connection, org id), when given, runs first in the same transaction and may refuse."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        if before is not None:
            await get_org(trail.conn, org_id)  # an unknown organisation is a 404 first
            await before(trail.conn, org_id)
        org = await set_switch(trail.conn, org_id, name, enabled)
        await trail.record(action, org_id, enabled=enabled)
    return org
