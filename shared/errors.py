"""The exception tree of Clicktrack.

    ClicktrackError              root; `retriable` says whether trying again may help
    ├── SettingsError            a variable is missing or malformed (not retriable)
    ├── DependencyError          Kafka, Redis or Postgres did not answer (retriable)
    ├── EventError               a click event cannot be read or fails its schema (not retriable:
    │                            the record goes to the dead-letter topic)
    └── NotFoundError            a code, link or campaign does not exist (not retriable)

Library errors (aiokafka, redis, asyncpg) are translated at the helper boundary with
`raise DependencyError("what went wrong, and what to do") from exc`.
"""

from __future__ import annotations


class ClicktrackError(Exception):
    """Root of every error Clicktrack raises on purpose."""

    retriable: bool = False


class SettingsError(ClicktrackError):
    """An environment variable is missing or malformed; the message names it."""


class DependencyError(ClicktrackError):
    """A service we depend on (Kafka, Redis, Postgres) is unreachable or failed."""

    retriable = True


class EventError(ClicktrackError):
    """A click event cannot be decoded or does not match its schema."""


class NotFoundError(ClicktrackError):
    """The thing asked for does not exist."""
