"""The sections of one service each: the redirector, the counter, the API, the relay and the lag
exporter. `shared.settings.Settings` holds one of each beside the shared sections; they live in
`shared` rather than next to their services because the CLI and the tests build them all and the
API reads the counter's group to report its lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from shared.errors import SettingsError
from shared.variables import (
    Secret,
    Section,
    cidr,
    long_token,
    random_key,
    var,
)


def tag_limit(name: str, value: str) -> str:
    """A `tag=N` item: a slot tag in lower case and a whole number of characters, 1 to 2000."""
    tag, _, limit = value.partition("=")
    if not (tag.isalpha() and tag.islower() and limit.isdigit() and 1 <= int(limit) <= 2000):
        raise SettingsError(f"{name} items must look like email=50, got {value!r}")
    return value


__all__ = [
    "ApiSettings",
    "CounterSettings",
    "LagSettings",
    "Listeners",
    "RedirectorSettings",
    "RelaySettings",
]


@dataclass(frozen=True)
class Listeners(Section):
    """The two listeners of a service that answers the internet (the redirector, the API): its
    public port, and `/metrics` on an address and port of their own, which the public port does
    not serve, so that operational counts are not readable from the internet (SECURITY.md).
    Each such section gives its ports' defaults."""

    host: str = "127.0.0.1"
    """Address the service listens on (`REDIRECTOR_HOST`, `API_HOST`)."""
    port: int = var(0, low=0, high=65535)
    """Port the service listens on; each section gives its own default and docstring."""
    metrics_host: str = "127.0.0.1"
    """Address of the service's `/metrics`, apart from its public port
    (`REDIRECTOR_METRICS_HOST`, `API_METRICS_HOST`)."""
    metrics_port: int = var(0, low=0, high=65535)
    """Port of the service's `/metrics`; each section gives its own default and docstring."""


@dataclass(frozen=True)
class RedirectorSettings(Listeners):
    """The redirector: its listeners, resolution, bots, publishing and spool."""

    prefix: ClassVar[str] = "REDIRECTOR_"

    port: int = var(8080, low=0, high=65535)
    """Port of the redirector (`REDIRECTOR_PORT`)."""
    metrics_port: int = var(8090, low=0, high=65535)
    """Port of the redirector's `/metrics` (`REDIRECTOR_METRICS_PORT`); with N workers, worker
    i uses this port + i."""
    workers: int = var(1, low=1, high=256)
    """Redirector processes sharing the port through SO_REUSEPORT (`REDIRECTOR_WORKERS`)."""
    visitor_hash_key: Secret = var(
        factory=random_key, production=True, check=long_token, env="VISITOR_HASH_KEY"
    )
    """Key of the HMAC that turns IP and user agent into a visitor id and signs the visitor
    cookie (`VISITOR_HASH_KEY`, at least 32 random characters). Required in production; unset
    elsewhere, a random key of this process (or `make up`'s, in `.stack/dev-keys.env`)."""
    visitor_hash_key_previous: Secret = var(
        Secret(""), empty=True, check=long_token, env="VISITOR_HASH_KEY_PREVIOUS"
    )
    """The key `VISITOR_HASH_KEY` replaced, during a rotation (`VISITOR_HASH_KEY_PREVIOUS`):
    cookies it signed are still believed, and signed again with the new key."""
    code_min_length: int = var(4, low=1, high=64, env="CODE_MIN_LENGTH")
    """Shortest code the redirector looks up; shorter ones are 404 at once (`CODE_MIN_LENGTH`)."""
    code_max_length: int = var(32, low=1, high=64, env="CODE_MAX_LENGTH")
    """Longest code the redirector looks up (`CODE_MAX_LENGTH`)."""
    local_cache_size: int = var(100_000, low=0, high=100_000_000, env="LOCAL_CACHE_SIZE")
    """Codes (and as many links) each redirector process keeps in memory (`LOCAL_CACHE_SIZE`)."""
    local_cache_ttl_s: int = var(30, low=0, high=86_400, env="LOCAL_CACHE_TTL_S")
    """Seconds a link stays fresh in process memory; bounds staleness when a pub/sub message
    is missed (`LOCAL_CACHE_TTL_S`). An expired link is reloaded in the background while its
    last value keeps being served."""
    local_code_ttl_s: int = var(86_400, low=0, high=30 * 86_400, env="LOCAL_CODE_TTL_S")
    """Seconds a code stays in process memory (`LOCAL_CODE_TTL_S`). A code never changes the
    link and recipient it was minted for, so only memory bounds it."""
    negative_cache_ttl_s: int = var(60, low=0, high=86_400, env="NEGATIVE_CACHE_TTL_S")
    """Seconds an unknown code is remembered as unknown, in memory and Redis
    (`NEGATIVE_CACHE_TTL_S`)."""
    redis_cache_ttl_s: int = var(3600, low=1, high=30 * 86_400, env="REDIS_CACHE_TTL_S")
    """Seconds a resolved code and its link stay in Redis (`REDIS_CACHE_TTL_S`)."""
    postgres_max_lookups: int = var(4, low=1, high=1_000, env="POSTGRES_MAX_LOOKUPS")
    """Postgres lookups one redirector process runs at once (`POSTGRES_MAX_LOOKUPS`); the rest
    wait their turn within `RESOLVE_BUDGET_MS`. Each gathers the misses of a loop turn."""
    resolve_budget_ms: int = var(500, low=1, high=60_000, env="RESOLVE_BUDGET_MS")
    """Time a cache miss may spend on Redis and Postgres before the answer is 503
    (`RESOLVE_BUDGET_MS`)."""
    publish_linger_ms: int = var(50, low=0, high=5_000, env="PUBLISH_LINGER_MS")
    """Time the redirector gathers click events before one send to Kafka, ms
    (`PUBLISH_LINGER_MS`). A send costs nearly the same CPU whatever its size, so a larger
    batch is far cheaper per click (docs/redirector.md); the visitor never waits for it."""
    publish_send_timeout_ms: int = var(5_000, low=100, high=600_000, env="PUBLISH_SEND_TIMEOUT_MS")
    """Time one batch may take to be acknowledged before the shipper retries it, ms
    (`PUBLISH_SEND_TIMEOUT_MS`)."""
    spool_dir: str = var(".stack/spool/redirector", env="SPOOL_DIR")
    """Folder of this process's click log (every click, written before its 302) and its
    checkpoint; one folder per process, on a disk that outlives the process (`SPOOL_DIR`)."""
    spool_max_mb: int = var(1024, low=1, high=10_000_000, env="SPOOL_MAX_MB")
    """Total size of the click log, MiB; past it clicks are dropped and counted
    (`SPOOL_MAX_MB`). It holds what Kafka has not yet taken, plus at most one file shipped."""
    spool_file_mb: int = var(64, low=1, high=4096, env="SPOOL_FILE_MB")
    """Size at which the click log starts a new file, MiB (`SPOOL_FILE_MB`)."""
    spool_fsync_ms: int = var(50, low=1, high=10_000, env="SPOOL_FSYNC_MS")
    """Interval of the click log's group fsync, ms: the most a machine crash can lose (a
    killed process loses nothing) (`SPOOL_FSYNC_MS`)."""
    bot_cidrs: tuple[str, ...] = var((), check=cidr, env="BOT_CIDRS")
    """Client networks whose clicks are bots, e.g. carrier link scanners (`BOT_CIDRS`, comma
    separated CIDRs)."""
    trusted_proxies: tuple[str, ...] = var((), check=cidr, env="TRUSTED_PROXIES")
    """Load balancers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, comma separated
    CIDRs); empty: the peer address is the client."""

    def checked(self) -> Self:
        if self.code_min_length > self.code_max_length:
            raise SettingsError("CODE_MIN_LENGTH must not exceed CODE_MAX_LENGTH")
        return self


@dataclass(frozen=True)
class CounterSettings(Section):
    """The counter: its group, batches and health server."""

    prefix: ClassVar[str] = "COUNTER_"

    group: str = "clicktrack-counter"
    """Consumer group id of the counter (`COUNTER_GROUP`)."""
    host: str = "127.0.0.1"
    """Address of the counter's health and metrics server (`COUNTER_HOST`)."""
    port: int = var(8081, low=0, high=65535)
    """Port of the counter's health and metrics server (`COUNTER_PORT`)."""
    batch_max_records: int = var(10_000, low=1, high=100_000)
    """Most records the counter takes into one batch, and so one transaction
    (`COUNTER_BATCH_MAX_RECORDS`). Reached only with a backlog (a steady stream fills a batch for
    `counter_batch_wait_ms`); then each counter row a batch touches is written once for more
    clicks (measured sizes: docs/operations.md, Scaling)."""
    batch_wait_ms: int = var(100, low=1, high=60_000)
    """Longest the counter waits to fill a batch, milliseconds (`COUNTER_BATCH_WAIT_MS`)."""
    statements: int = var(2, low=1, high=8)
    """Postgres statements a batch is split into, run at once on their own connections, each
    taking whole campaigns so that no two write the same row (`COUNTER_STATEMENTS`; 1: one
    statement that also stores the offsets)."""
    session_timeout_ms: int = var(10_000, low=1_000, high=3_600_000)
    """Kafka group session timeout of the counter, milliseconds: how long a dead member holds its
    partitions (`COUNTER_SESSION_TIMEOUT_MS`; the broker accepts 6000 and more by default)."""
    instance_id: str | None = None
    """Static group membership id of this counter process (`COUNTER_INSTANCE_ID`, unset by
    default): a restarted process with the same id takes its partitions back at once instead of
    waiting for the session timeout, and no rebalance moves them meanwhile; the other side of it:
    the partitions of a process that stops for good wait out the session timeout."""
    event_max_bytes: int = var(65_536, low=1_024, high=1_000_000, env="EVENT_MAX_BYTES")
    """Largest click record the counter accepts; bigger ones are dead-lettered, bytes
    (`EVENT_MAX_BYTES`)."""
    dedup_retention_days: int = var(9, low=2, high=3_650, env="DEDUP_RETENTION_DAYS")
    """Days of event ids kept for deduplication (`DEDUP_RETENTION_DAYS`); must exceed the topic's
    retention so that any record still in the topic finds its id. Pruned by dropping daily
    partitions."""
    visitor_retention_days: int = var(400, low=3, high=36_500, env="VISITOR_RETENTION_DAYS")
    """Days per-person data is kept (`VISITOR_RETENTION_DAYS`): the visitor rows and the
    per-recipient clicks, partitioned by UTC month; a month is dropped whole once all of it is
    older than this (so a row lives this long and at most a month more). Counts stay. Must exceed
    `DEDUP_RETENTION_DAYS` (docs/retention.md)."""


@dataclass(frozen=True)
class ApiSettings(Listeners):
    """The links and reports API."""

    prefix: ClassVar[str] = "API_"

    port: int = var(8082, low=0, high=65535)
    """Port of the links API (`API_PORT`)."""
    metrics_port: int = var(8092, low=0, high=65535)
    """Port of the API's `/metrics` (`API_METRICS_PORT`)."""
    rate_per_s: int = var(50, low=1, high=1_000_000)
    """Requests per second one caller (API key, or address without one) may make to all the API
    processes together, counted in Redis (`API_RATE_PER_S`); over it: 429 with Retry-After."""
    rate_burst: int = var(100, low=1, high=1_000_000)
    """Requests a caller may make at once before the rate applies (`API_RATE_BURST`)."""
    auth_failures_burst: int = var(20, low=1, high=1_000_000)
    """Refused credentials one client address may send before it is slowed to one per 5 s
    (`API_AUTH_FAILURES_BURST`): guessing keys stays hopeless."""
    redis_budget_ms: int = var(500, low=10, high=60_000)
    """Time one Redis call of a report or a rate limit may take (`API_REDIS_BUDGET_MS`); past it
    the report reads Postgres instead (`totals_source`) and the request is not limited."""
    org_concurrency: int = var(4, low=1, high=1_000)
    """Heavy requests (CSV exports and lists, batch renders, minting, resends, bulk erasures) one
    organisation may run at once in one API process (`API_ORG_CONCURRENCY`); past it: 429 with
    Retry-After, other organisations go on."""
    org_reads: int = var(4, low=1, high=1_000)
    """Reports, charts and recipient-list pages one organisation may run at once in one API
    process (`API_ORG_READS`); the next ones wait their turn (10 s at most, then 429), so one
    organisation's burst cannot take the pool from the others."""
    trusted_proxies: tuple[str, ...] = var((), check=cidr)
    """Load balancers in front of the API whose `X-Forwarded-For` is believed
    (`API_TRUSTED_PROXIES`, comma separated CIDRs): the client address the rate limits count
    by is then the rightmost hop not among them; empty: the peer address is the client."""
    dlt_var_limit: int = var(30, low=1, high=2000, env="DLT_VAR_LIMIT")
    """Characters a DLT `{#var#}` value may hold (`DLT_VAR_LIMIT`); the short link must fit."""
    dlt_tag_limits: tuple[str, ...] = var((), env="DLT_TAG_LIMITS", check=tag_limit)
    """Characters a typed slot may hold, as `tag=N` items (`DLT_TAG_LIMITS`, e.g.
    `email=50,cbn=15`); a tag not listed takes DLT_VAR_LIMIT. A `{#url#}` slot's limit applies
    to the link after shortening."""
    recipient_key: Secret = var(
        factory=random_key, production=True, check=long_token, env="RECIPIENT_KEY"
    )
    """Master key of the recipients' pseudonyms and of their sealed ids (`RECIPIENT_KEY`, at
    least 32 random characters): each organisation's keys are derived from it
    (`shared.recipients`). Required in production, and never changed once codes were minted
    with it: a new key gives every recipient a new pseudonym. Unset elsewhere: a random key of
    this process (or `make up`'s, in `.stack/dev-keys.env`)."""
    operator_token: Secret = var(
        Secret(""), empty=True, check=long_token, production=True, env="OPERATOR_TOKEN"
    )
    """Bearer credential of the operator API (`OPERATOR_TOKEN`, at least 32 characters);
    unset: the operator routes are refused and only the CLI can create organisations. Required
    in production."""
    operator_name: str = var("api-operator", env="OPERATOR_NAME")
    """Name the operator credential's actions are recorded under in the audit trail
    (`OPERATOR_NAME`); the CLI records `cli:<login>` instead."""


@dataclass(frozen=True)
class RelaySettings(Section):
    """The webhook relay."""

    prefix: ClassVar[str] = "RELAY_"

    group: str = "clicktrack-webhooks"
    """Consumer group of the webhook relay (`RELAY_GROUP`)."""
    start_from: str = var("latest", choices=("latest", "earliest"))
    """Where a relay group with no committed offsets starts (`RELAY_START_FROM`): `latest` (only
    clicks from now on) or `earliest` (everything the topic still holds)."""
    host: str = "127.0.0.1"
    """Address of the relay's health and metrics server (`RELAY_HOST`)."""
    port: int = var(8086, low=0, high=65535)
    """Port of the relay's health and metrics server (`RELAY_PORT`)."""
    webhook_dlq_topic: str = var("webhooks.dlq", env="WEBHOOK_DLQ_TOPIC")
    """Where the relay puts events no retry could deliver (`WEBHOOK_DLQ_TOPIC`)."""
    webhook_max_attempts: int = var(6, low=1, high=100, env="WEBHOOK_MAX_ATTEMPTS")
    """Tries per delivery before it is dead-lettered (`WEBHOOK_MAX_ATTEMPTS`)."""
    webhook_backoff_ms: int = var(1000, low=0, high=3_600_000, env="WEBHOOK_BACKOFF_MS")
    """First retry delay in milliseconds, doubled on each retry, with jitter
    (`WEBHOOK_BACKOFF_MS`)."""
    webhook_timeout_ms: int = var(10_000, low=100, high=600_000, env="WEBHOOK_TIMEOUT_MS")
    """Time an endpoint has to answer one delivery, milliseconds (`WEBHOOK_TIMEOUT_MS`)."""
    webhook_batch_max: int = var(100, low=1, high=10_000, env="WEBHOOK_BATCH_MAX")
    """Most events in one webhook POST (`WEBHOOK_BATCH_MAX`)."""
    webhook_secret_key: Secret = var(
        factory=random_key, production=True, check=long_token, env="WEBHOOK_SECRET_KEY"
    )
    """Key that seals the endpoints' signing secrets at rest (`WEBHOOK_SECRET_KEY`, at least 32
    random characters; AES-256-GCM under a key derived from it). Required in production; the CLI
    (`webhook add`) and the relay must share it. Unset elsewhere: a random key of this process
    (or `make up`'s, in `.stack/dev-keys.env`)."""
    webhook_allow_insecure: bool = var(False, env="WEBHOOK_ALLOW_INSECURE")
    """Allow `http://` endpoints and private, loopback or link-local addresses
    (`WEBHOOK_ALLOW_INSECURE`); for local development and tests only."""


@dataclass(frozen=True)
class LagSettings(Section):
    """The lag exporter."""

    prefix: ClassVar[str] = "LAG_"

    host: str = "127.0.0.1"
    """Address of the lag exporter (`LAG_HOST`)."""
    port: int = var(8083, low=0, high=65535)
    """Port of the lag exporter's `/metrics` (`LAG_PORT`)."""
    groups: tuple[str, ...] = ()
    """Consumer groups the lag exporter watches (`LAG_GROUPS`, comma-separated); empty: all."""
    poll_ms: int = var(10_000, low=100, high=3_600_000)
    """Milliseconds between two lag samples of the exporter (`LAG_POLL_MS`)."""
    window_samples: int = var(10, low=2, high=1000)
    """Samples in the sliding window a group's status is judged on (`LAG_WINDOW_SAMPLES`)."""
    cluster_name: str = "clicktrack"
    """Value of the `cluster_name` label of the lag metrics (`LAG_CLUSTER_NAME`)."""
