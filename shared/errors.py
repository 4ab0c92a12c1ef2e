"""The exception tree of Clicktrack.

    ClicktrackError              root; `retriable` says whether trying again may help
    ├── SettingsError            a variable is missing or malformed (not retriable)
    ├── DependencyError          Kafka, Redis or Postgres did not answer (retriable)
    │   ├── RedisEmptyError      Redis lost its counters: rebuild them from Postgres (retriable)
    │   └── EarlierBatchFailed   the counter's batch before this one failed (retriable: both
    │                            are read again from the stored offsets)
    ├── QueryError               Postgres refused a statement: a deadlock, a trigger's error, a
    │   │                        bug (retriable: the counter reads its batch again; the API
    │   │                        answers 500 without the details)
    │   ├── ConflictError        a row with this unique key exists already (not retriable)
    │   └── MissingRowError      a row the statement refers to does not exist (not retriable)
    ├── EventError               a click event cannot be read or fails its schema (not retriable:
    │                            the record goes to the dead-letter topic)
    ├── NotFoundError            a code, link or campaign does not exist (not retriable)
    ├── InvalidInputError        input that cannot be accepted as given; `code` names the rule
    │   ├── InvalidLinkError     a destination URL, expiry or fallback is not acceptable
    │   ├── TemplateError        a DLT template or its values break a DLT rule
    │   └── WebhookError         a webhook endpoint is refused (not https, a private address)
    ├── AuthError                no credential, or one that is not valid (HTTP 401)
    ├── ForbiddenError           a valid credential that may not do this (HTTP 403)
    ├── TrackingDisabledError    the organisation's link tracking is off: nothing is minted
    │                            (HTTP 409, not retriable until an operator switches it on)
    ├── DeliveryError            a webhook POST failed (retriable: the relay retries with backoff)
    └── SignatureError           a webhook's signature or timestamp does not verify

Services add leaves of their own under these (`services.api.errors.BadRequestError`,
`services.cli.loadgen.LoadgenError`); nothing raised on purpose stands outside the root.

Every class has a `code` (a stable, machine-readable name used as the `error` of an HTTP error
body), given like `retriable` beside its bases (`class NotFoundError(ClicktrackError,
code="not_found")`), and `context` (extra facts for that body, such as the `position` in a
template).

Library errors (aiokafka, redis, asyncpg) are translated at the helper boundary, and only there:
`shared.db.errors`, `shared.redis_client.errors` and `shared.kafka.errors` raise
`DependencyError("what went wrong, and what to do") from exc` (or a `QueryError`), so services
branch on `retriable` and on these classes, never on a library's types.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType


class ClicktrackError(Exception):
    """Root of every error Clicktrack raises on purpose."""

    retriable: bool = False
    code: str = "internal_error"

    def __init_subclass__(cls, code: str | None = None, retriable: bool | None = None) -> None:
        """A subclass states its `code` and `retriable` beside its bases:
        `class NotFoundError(ClicktrackError, code="not_found")`."""
        super().__init_subclass__()
        if code is not None:
            cls.code = code
        if retriable is not None:
            cls.retriable = retriable

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


class DependencyError(ClicktrackError, code="dependency_unavailable", retriable=True):
    """A service we depend on (Kafka, Redis, Postgres) is unreachable or failed."""


class RedisEmptyError(DependencyError, code="redis_empty"):
    """Redis lacks the marker key: it lost its data and must be rebuilt from Postgres."""


class EarlierBatchFailed(DependencyError, code="earlier_batch_failed"):
    """The counter's batch read before this one failed: this one's offsets must not be stored."""


class QueryError(ClicktrackError, code="query_failed", retriable=True):
    """Postgres refused a statement (a deadlock, a serialization failure, a trigger's error, a
    bug). Retriable: the same statement may pass on a second try; the message says which."""


class ConflictError(QueryError, code="conflict", retriable=False):
    """A unique key already has a row (`UNIQUE`, `PRIMARY KEY`)."""


class MissingRowError(QueryError, code="missing_row", retriable=False):
    """A row the statement refers to does not exist (a `FOREIGN KEY` found nothing)."""


class EventError(ClicktrackError):
    """A click event cannot be decoded or does not match its schema."""


class NotFoundError(ClicktrackError, code="not_found"):
    """The thing asked for does not exist."""


class InvalidInputError(ClicktrackError, code="invalid_input"):
    """Input that cannot be accepted as given; the message says why and `code` names the rule."""


class InvalidLinkError(InvalidInputError, ValueError, code="invalid_destination"):
    """A destination, expiry or fallback URL is not acceptable; the message says why."""


class TemplateError(InvalidInputError, code="invalid_template"):
    """A DLT template or its slot values break a rule (`link_outside_var`, `var_too_long`, ...)."""


class AuthError(ClicktrackError, code="unauthorized"):
    """The request carries no credential, or one that is unknown or revoked."""


class ForbiddenError(ClicktrackError, code="forbidden"):
    """The credential is valid but may not do this (an API key on an operator route)."""


class TrackingDisabledError(ClicktrackError, code="tracking_disabled"):
    """The organisation's link tracking is off, so no tracked link or code may be created."""


class WebhookError(InvalidInputError, code="invalid_webhook_url"):
    """A webhook endpoint cannot be registered or used: not https, a private address, ..."""


class DeliveryError(ClicktrackError, code="webhook_delivery_failed", retriable=True):
    """One webhook delivery attempt failed: refused connection, timeout, non-2xx answer.

    `retry_after_s` is the delay the endpoint asked for (`Retry-After`), if any; an attempt that
    can never succeed (a private address) is raised with `retriable=False`.
    """

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, retriable: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.retriable = retriable


class SignatureError(ClicktrackError, code="invalid_signature"):
    """A received webhook does not carry a valid signature within the time tolerance."""


class Boundary:
    """A context manager that raises `translate(exc)` from an exception of `kinds` raised in it,
    and lets everything else (our own errors, cancellation) through unchanged.

    The boundary modules (`shared.db`, `shared.redis_client`, `shared.kafka`) build these; a
    `with` costs nothing measurable when nothing is raised.
    """

    __slots__ = ("_kinds", "_translate")

    def __init__(
        self,
        kinds: tuple[type[BaseException], ...],
        translate: Callable[[BaseException], ClicktrackError],
    ) -> None:
        self._kinds = kinds
        self._translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and isinstance(exc, self._kinds):
            raise self._translate(exc) from exc


def retriable(exc: BaseException) -> bool:
    """Whether trying again may help: one of ours with `retriable` set, or a timeout."""
    if isinstance(exc, ClicktrackError):
        return exc.retriable
    return isinstance(exc, TimeoutError)
