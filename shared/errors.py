"""The exception tree of Clicktrack.

    ClicktrackError              root; `retriable` says whether trying again may help
    ├── SettingsError            a variable is missing or malformed (not retriable)
    ├── DependencyError          Kafka, Redis or Postgres did not answer (retriable)
    ├── EventError               a click event cannot be read or fails its schema (not retriable:
    │                            the record goes to the dead-letter topic)
    ├── NotFoundError            a code, link or campaign does not exist (not retriable)
    ├── InvalidInputError        input that cannot be accepted as given; `code` names the rule
    │   ├── InvalidLinkError     a destination URL, expiry or fallback is not acceptable
    │   ├── TemplateError        a DLT template or its values break a DLT rule
    │   └── WebhookError         a webhook endpoint is refused (not https, a private address)
    ├── AuthError                no credential, or one that is not valid (HTTP 401)
    ├── ForbiddenError           a valid credential that may not do this (HTTP 403)
    ├── DeliveryError            a webhook POST failed (retriable: the relay retries with backoff)
    └── SignatureError           a webhook's signature or timestamp does not verify

Every class has a `code` (a stable, machine-readable name used as the `error` of an HTTP error
body) and `context` (extra facts for that body, such as the `position` in a template).

Library errors (aiokafka, redis, asyncpg) are translated at the helper boundary with
`raise DependencyError("what went wrong, and what to do") from exc`.
"""

from __future__ import annotations


class ClicktrackError(Exception):
    """Root of every error Clicktrack raises on purpose."""

    retriable: bool = False
    code: str = "internal_error"

    def __init__(self, detail: str = "", *, code: str | None = None, **context: int | str) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.context: dict[str, int | str] = context

    @property
    def detail(self) -> str:
        """The human-readable message."""
        return str(self)


class SettingsError(ClicktrackError):
    """An environment variable is missing or malformed; the message names it."""


class DependencyError(ClicktrackError):
    """A service we depend on (Kafka, Redis, Postgres) is unreachable or failed."""

    retriable = True
    code = "dependency_unavailable"


class EventError(ClicktrackError):
    """A click event cannot be decoded or does not match its schema."""


class NotFoundError(ClicktrackError):
    """The thing asked for does not exist."""

    code = "not_found"


class InvalidInputError(ClicktrackError):
    """Input that cannot be accepted as given; the message says why and `code` names the rule."""

    code = "invalid_input"


class InvalidLinkError(InvalidInputError, ValueError):
    """A destination, expiry or fallback URL is not acceptable; the message says why."""

    code = "invalid_destination"


class TemplateError(InvalidInputError):
    """A DLT template or its slot values break a rule (`link_outside_var`, `var_too_long`, ...)."""

    code = "invalid_template"


class AuthError(ClicktrackError):
    """The request carries no credential, or one that is unknown or revoked."""

    code = "unauthorized"


class ForbiddenError(ClicktrackError):
    """The credential is valid but may not do this (an API key on an operator route)."""

    code = "forbidden"


class WebhookError(InvalidInputError):
    """A webhook endpoint cannot be registered or used: not https, a private address, ..."""

    code = "invalid_webhook_url"


class DeliveryError(ClicktrackError):
    """One webhook delivery attempt failed: refused connection, timeout, non-2xx answer.

    `retry_after_s` is the delay the endpoint asked for (`Retry-After`), if any; an attempt that
    can never succeed (a private address) is raised with `retriable=False`.
    """

    retriable = True
    code = "webhook_delivery_failed"

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, retriable: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.retriable = retriable


class SignatureError(ClicktrackError):
    """A received webhook does not carry a valid signature within the time tolerance."""

    code = "invalid_signature"
