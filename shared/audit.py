"""The operators' audit trail: what an operator did, when, as whom, and for which ticket.

Tracking is switched on through a support ticket, domains and whitelists change on a customer's
request: each such operator action is one row of `operator_audit` (migration 0040), written by
`record` in the same transaction as the action itself, so an action without its row (or a row
without its action) cannot be committed: `acting` opens that transaction, and its `Trail` writes
the rows with the operator and the ticket of the action. `clicktrack audit` and `GET /v1/audit`
list them.

The operator is the name of the credential that acted: `cli:<login>` for the CLI (the operator's
own account on the machine that holds the database credentials), the `OPERATOR_NAME` of the
operator token for the API.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import asyncpg
import orjson

from shared.errors import InvalidInputError

Action = Literal[
    "org.created",
    "tracking.enabled",
    "tracking.disabled",
    "key.issued",
    "key.revoked",
    "domain.added",
    "domain.moved",
    "domain.removed",
    "domain.default",
    "org.header_in_path",
    "org.whitelist_check",
    "org.time_zone",
    "whitelist.added",
    "whitelist.imported",
    "whitelist.removed",
    "org.purged",
    "recipients.erased",
    "retention.dropped",
    "webhook.added",
    "webhook.removed",
]
"""What an operator did. Adding one: here (the SQL checks only its spelling, `noun.verb`)."""
ACTIONS: tuple[Action, ...] = get_args(Action)
MAX_TICKET = 100
"""Longest ticket reference, characters."""

_COLUMNS = "id, at, operator, action, org_id, ticket, detail"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action."""

    id: int
    at: datetime
    operator: str
    """Name of the operator credential (`cli:<login>`, or the API's `OPERATOR_NAME`)."""
    action: str
    """One of `ACTIONS`."""
    org_id: int | None
    """The organisation acted on."""
    ticket: str | None
    """The support ticket the action answers, as the operator gave it."""
    detail: dict[str, Any]
    """What changed (a domain, a key id, the number of entries imported...)."""


def clean_ticket(ticket: str | None) -> str | None:
    """A trimmed ticket reference (1 to 100 printable characters), None when not given, or
    `InvalidInputError` (`invalid_ticket`)."""
    if ticket is None:
        return None
    ticket = ticket.strip()
    if not ticket or len(ticket) > MAX_TICKET or not ticket.isprintable():
        raise InvalidInputError(
            f"ticket must be 1 to {MAX_TICKET} printable characters", code="invalid_ticket"
        )
    return ticket


def cli_operator() -> str:
    """The operator name of a CLI run: `cli:` and the login of the account running it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli:unknown"


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    operator: str,
    action: Action,
    org_id: int | None,
    ticket: str | None = None,
    **detail: Any,
) -> int:
    """Write one audit row (inside the caller's transaction, to commit with the action);
    returns its id. `detail` is stored as JSON."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")  # a bug, not input
    entry_id: int = await conn.fetchval(
        "INSERT INTO operator_audit (operator, action, org_id, ticket, detail)"
        " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id",
        operator,
        action,
        org_id,
        clean_ticket(ticket),
        orjson.dumps(detail).decode(),
    )
    return entry_id


@dataclass(frozen=True, slots=True)
class Trail:
    """An operator action in progress: the connection of its transaction, and the operator and
    (checked) ticket every audit row it writes carries."""

    conn: asyncpg.Connection
    operator: str
    ticket: str | None

    async def record(self, action: Action, org_id: int | None, **detail: Any) -> int:
        """Write one audit row of this action, in its transaction; returns the row's id."""
        return await record(
            self.conn, operator=self.operator, action=action, org_id=org_id, ticket=self.ticket,
            **detail,
        )  # fmt: skip


@asynccontextmanager
async def acting(pool: asyncpg.Pool, *, operator: str, ticket: str | None) -> AsyncIterator[Trail]:
    """One transaction for an operator action and its audit rows, committed together or not at
    all. The ticket is checked first, before anything is read or written (`invalid_ticket`)."""
    ticket = clean_ticket(ticket)
    async with pool.acquire() as conn, conn.transaction():
        yield Trail(conn, operator, ticket)


async def list_entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    org_id: int | None = None,
    after_id: int = 0,
    limit: int = 100,
    newest: bool = False,
) -> list[AuditEntry]:
    """Audit rows by id (of one organisation, or all): `limit` of them after `after_id`, or with
    `newest` the last `limit` (still oldest first)."""
    order = "DESC" if newest else "ASC"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM operator_audit"
        " WHERE ($1::bigint IS NULL OR org_id = $1) AND id > $2"
        f" ORDER BY id {order} LIMIT $3",
        org_id,
        after_id,
        limit,
    )
    entries = [AuditEntry(**{**dict(r), "detail": orjson.loads(r["detail"])}) for r in rows]
    return entries[::-1] if newest else entries
