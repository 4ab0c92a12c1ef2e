"""Postgres helpers: a connection pool that retries at start-up, the migration runner, the
readers that turn rows into our records (`fetch_all`, `fetch_one`), and the boundary where
asyncpg's errors become ours (`errors`).

Migrations are the numbered `*.sql` files in `shared/migrations/`, applied in order, each in its
own transaction, under an advisory lock so two processes starting together do not race. We keep
this runner (about 40 lines) instead of a migration library because those drive Postgres through
a second, synchronous driver; everything here speaks asyncpg.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from shared.errors import (
    Boundary,
    ClicktrackError,
    ConflictError,
    DependencyError,
    MissingRowError,
    NotFoundError,
    QueryError,
)
from shared.settings import PostgresSettings, mask_url

log = logging.getLogger(__name__)

R = TypeVar("R")

_MIGRATION_LOCK = 0x0C11C7  # an arbitrary key for pg_advisory_xact_lock

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    # the server is shutting down or refuses connections for now (AdminShutdown, ...)
    asyncpg.OperatorInterventionError,
    # the session sat idle in a transaction past idle_in_transaction_session_timeout: gone
    asyncpg.IdleInTransactionSessionTimeoutError,
    # A connection whose server went away mid-statement can fail its reset on release ("cannot
    # switch to state 15; another operation is in progress"); the pool closes that connection.
    asyncpg.InternalClientError,
)
_FAILURES = (*_UNAVAILABLE, asyncpg.PostgresError)


def errors(unavailable: str) -> Boundary:
    """A context manager that turns an asyncpg error raised in it into one of ours:

    - Postgres unreachable, gone mid-statement, shutting down, timed out: `DependencyError`
      (retriable) with the message `unavailable` ("what went wrong, what to do") and the cause;
    - a unique key taken: `ConflictError`; a foreign key that finds no row: `MissingRowError`;
    - a statement cancelled at its timeout: `DependencyError` (retriable: the database is busy);
    - any other refusal (deadlock, serialization failure, a trigger's error): `QueryError`
      (retriable).
    """
    return Boundary(_FAILURES, lambda exc: _translate(unavailable, exc))


def _translate(unavailable: str, exc: BaseException) -> ClicktrackError:
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"Postgres: a row with this key exists already ({exc})")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return MissingRowError(f"Postgres: a row this one refers to does not exist ({exc})")
    if isinstance(exc, asyncpg.QueryCanceledError):
        return DependencyError(
            f"{unavailable}: Postgres cancelled a statement that ran past its timeout"
            " (POSTGRES_STATEMENT_TIMEOUT_MS)"
        )
    if isinstance(exc, _UNAVAILABLE):
        return DependencyError(unavailable)
    return QueryError(f"Postgres refused a statement: {exc!r}")


@asynccontextmanager
async def pool(
    postgres: PostgresSettings,
    *,
    min_size: int = 1,
    max_size: int = 10,
    retries: int = 10,
    server_settings: dict[str, str] | None = None,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool whose connections use `postgres.schema`; closed on exit.

    Every connection has the statement and idle-in-transaction timeouts of `postgres`, so no
    request can hold a connection, its locks or vacuum for long. `server_settings`: more run-time
    parameters for every connection (`{"jit": "off"}`), which win over those.
    `reset`: what a connection goes through when it returns to the pool (default asyncpg's
    `RESET ALL; UNLISTEN *; ...`, a round trip; `keep_session` for read-only lookups).
    Start-up tries `retries` times, one second apart, logging the host and the tries left.
    """
    dsn = postgres.dsn.reveal()
    last: Exception | None = None
    for attempt in range(retries, 0, -1):
        try:
            created = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings={
                    "statement_timeout": str(postgres.statement_timeout_ms),
                    "idle_in_transaction_session_timeout": str(
                        postgres.idle_in_transaction_timeout_ms
                    ),
                    **(server_settings or {}),
                    "search_path": postgres.schema,
                },
                reset=reset,
            )
            break
        except _FAILURES as exc:
            last = exc
            log.warning(
                "postgres not reachable", extra={"dsn": mask_url(dsn), "retries_left": attempt - 1}
            )
            if attempt > 1:
                await asyncio.sleep(1)
    else:
        raise DependencyError(
            f"cannot connect to Postgres at {mask_url(dsn)}: {last}; is the stack up (make up)?"
        ) from last
    try:
        yield created
    finally:
        await created.close()


async def fetch_all(
    conn: asyncpg.Connection | asyncpg.Pool, record: Callable[..., R], sql: str, *args: Any
) -> list[R]:
    """Every row of `sql` as a `record` (a dataclass whose fields are the selected columns,
    by name), in the order of the statement."""
    return [record(**dict(row)) for row in await conn.fetch(sql, *args)]


async def fetch_one(
    conn: asyncpg.Connection | asyncpg.Pool,
    record: Callable[..., R],
    sql: str,
    *args: Any,
    missing: str,
) -> R:
    """The first row of `sql` as a `record` (see `fetch_all`), or `NotFoundError(missing)` when
    there is none: what a read, an `UPDATE ... RETURNING` or a `DELETE ... RETURNING` of one row
    of an organisation answers for a row that is not there (or not that organisation's)."""
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise NotFoundError(missing)
    return record(**dict(row))


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool `reset` that keeps the session as it is: for connections that only run reads and
    change no session state (the redirector's lookups), it spares each release a round trip.
    A connection left in a transaction is still rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every migration shipped with the package, in order."""
    folder = resources.files("shared") / "migrations"
    found = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in found]


async def migrate(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Apply the migrations `schema` lacks (creating it if missing); returns their versions."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute("SET LOCAL statement_timeout = 0")  # rewriting a big table takes long
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now
