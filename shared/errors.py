"""The exception tree of Clicktrack.

    ClicktrackError              root; `retriable` says whether trying again may help
    ├── SettingsError            a variable is missing or malformed (not retriable)
    ├── DependencyError          Kafka, Redis or Postgres did not answer (retriable)
    ├── EventError               a click event cannot be read or fails its schema (not retriable:
    │                            the record goes to the dead-letter topic)
    ├── NotFoundError            a code, link or campaign does not exist (not retriable)
    ├── WebhookError             a webhook endpoint is refused (bad URL, private address)
    ├── DeliveryError            a webhook POST failed (retriable: the relay retries with backoff)
    └── SignatureError           a webhook's signature or timestamp does not verify

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


class WebhookError(ClicktrackError):
    """A webhook endpoint cannot be registered or used: not https, a private address, ..."""


class DeliveryError(ClicktrackError):
    """One webhook delivery attempt failed: refused connection, timeout, non-2xx answer.

    `retry_after_s` is the delay the endpoint asked for (`Retry-After`), if any; an attempt that
    can never succeed (a private address) is raised with `retriable=False`.
    """

    retriable = True

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, retriable: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.retriable = retriable


class SignatureError(ClicktrackError):
    """A received webhook does not carry a valid signature within the time tolerance."""
