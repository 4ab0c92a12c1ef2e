"""Settings read once from the environment into a frozen record.

Every variable has a local default that matches the native stack (`make up`), so a developer
needs to set nothing. A malformed value raises `SettingsError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import SettingsError

_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*(?P<tail>@)", re.I)


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in `repr`, `str` or logs; `.reveal()` returns it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        # A URL keeps its shape (useful in errors) but not its password; anything else is hidden.
        shown = mask_url(self._value) if "://" in self._value else "***"
        return f"Secret({shown!r})"

    __str__ = __repr__


def mask_url(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`; other strings are returned as-is."""
    return _PASSWORD_IN_URL.sub(r"\g<head>***\g<tail>", url)


@dataclass(frozen=True)
class Settings:
    """Everything a Clicktrack process needs to know about its surroundings."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers (`KAFKA_BOOTSTRAP_SERVERS`)."""
    redis_url: Secret = Secret("redis://127.0.0.1:6379/0")
    """Redis URL, may carry a password (`REDIS_URL`)."""
    postgres_dsn: Secret = Secret("postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack")
    """asyncpg DSN (`POSTGRES_DSN`)."""
    postgres_schema: str = "public"
    """Schema the tables live in (`POSTGRES_SCHEMA`); tests use one schema per test."""
    clicks_topic: str = "clicks.v1"
    """Topic the redirector publishes click events to (`CLICKS_TOPIC`)."""
    dlq_topic: str = "clicks.dlq"
    """Dead-letter topic for events the counter cannot read (`DLQ_TOPIC`)."""
    topic_partitions: int = 6
    """Partitions of the clicks topic when `clicktrack topics` creates it (`TOPIC_PARTITIONS`)."""
    topic_retention_hours: int = 168
    """Retention of the clicks topic, hours (`TOPIC_RETENTION_HOURS`, default 7 days)."""
    counter_group: str = "clicktrack-counter"
    """Consumer group id of the counter (`COUNTER_GROUP`)."""
    redirector_host: str = "127.0.0.1"
    """Address the redirector listens on (`REDIRECTOR_HOST`)."""
    redirector_port: int = 8080
    """Port of the redirector (`REDIRECTOR_PORT`)."""
    redirector_metrics_host: str = "127.0.0.1"
    """Address of the redirector's `/metrics`, apart from the public port
    (`REDIRECTOR_METRICS_HOST`)."""
    redirector_metrics_port: int = 8090
    """Port of the redirector's `/metrics` (`REDIRECTOR_METRICS_PORT`); with N workers, worker
    i uses this port + i. The public port does not serve `/metrics`."""
    counter_host: str = "127.0.0.1"
    """Address of the counter's health and metrics server (`COUNTER_HOST`)."""
    counter_port: int = 8081
    """Port of the counter's health and metrics server (`COUNTER_PORT`)."""
    short_base_url: str = "http://127.0.0.1:8080"
    """Base of the short links handed out, without a trailing slash (`SHORT_BASE_URL`)."""
    publish_queue_size: int = 10_000
    """Events the redirector holds in memory for the sink (`PUBLISH_QUEUE_SIZE`)."""
    visitor_hash_key: Secret = Secret("dev-only-visitor-key")
    """Key of the HMAC that turns IP and user agent into a visitor id (`VISITOR_HASH_KEY`)."""
    log_level: str = "INFO"
    """Root log level (`LOG_LEVEL`)."""
    api_host: str = "127.0.0.1"
    """Address the links API listens on (`API_HOST`)."""
    api_port: int = 8082
    """Port of the links API (`API_PORT`)."""
    api_rate_per_s: int = 50
    """Requests per second one caller (API key, or address without one) may make to one API
    process (`API_RATE_PER_S`); over it: 429 with Retry-After."""
    api_rate_burst: int = 100
    """Requests a caller may make at once before the rate applies (`API_RATE_BURST`)."""
    api_auth_failures_burst: int = 20
    """Refused credentials one client address may send before it is slowed to one per 5 s
    (`API_AUTH_FAILURES_BURST`): guessing keys stays hopeless."""
    short_domain: str = "127.0.0.1:8080"
    """What an SMS carries before `/<code>`: the redirector's host, optionally with a scheme or
    port (`SHORT_DOMAIN`; default: SHORT_BASE_URL without its scheme)."""
    code_length: int = 10
    """Characters in a new short code, base62 (`CODE_LENGTH`, 8 to 20)."""
    dlt_var_limit: int = 30
    """Characters a DLT `{#var#}` value may hold (`DLT_VAR_LIMIT`); the short link must fit."""
    operator_token: Secret = Secret("")
    """Bearer credential of the operator API (`OPERATOR_TOKEN`, at least 32 characters);
    unset: the operator routes are refused and only the CLI can create organisations."""
    counter_batch_max_records: int = 10_000
    """Most records the counter takes into one batch, and so one transaction
    (`COUNTER_BATCH_MAX_RECORDS`). Reached only with a backlog (a steady stream fills a batch for
    `counter_batch_wait_ms`); then each counter row a batch touches is written once for more
    clicks: in `bench/counter`, 5,000 counted about a quarter faster than 2,000, and 10,000
    about a tenth faster than 5,000."""
    counter_batch_wait_ms: int = 100
    """Longest the counter waits to fill a batch, milliseconds (`COUNTER_BATCH_WAIT_MS`)."""
    counter_statements: int = 2
    """Postgres statements a batch is split into, run at once on their own connections, each
    taking whole campaigns so that no two write the same row (`COUNTER_STATEMENTS`; 1: one
    statement that also stores the offsets)."""
    counter_session_timeout_ms: int = 10_000
    """Kafka group session timeout of the counter, milliseconds: how long a dead member holds its
    partitions (`COUNTER_SESSION_TIMEOUT_MS`; the broker accepts 6000 and more by default)."""
    counter_instance_id: str | None = None
    """Static group membership id of this counter process (`COUNTER_INSTANCE_ID`, unset by
    default): a restarted process with the same id takes its partitions back at once instead of
    waiting for the session timeout, and no rebalance moves them meanwhile; the other side of it:
    the partitions of a process that stops for good wait out the session timeout."""
    event_max_bytes: int = 65_536
    """Largest click record the counter accepts; bigger ones are dead-lettered, bytes
    (`EVENT_MAX_BYTES`)."""
    dedup_retention_days: int = 9
    """Days of event ids kept for deduplication (`DEDUP_RETENTION_DAYS`); must exceed the topic's
    retention so that any record still in the topic finds its id. Pruned by dropping daily
    partitions."""
    # --- operations: topic replication, the lag exporter, the webhook relay (issue 7) ---
    topic_replication_factor: int = 0
    """Replicas per partition when topics are created (`TOPIC_REPLICATION_FACTOR`); 0 means
    min(3, brokers in the cluster). With more than one replica, `min.insync.replicas` is set to
    replicas - 1."""
    lag_host: str = "127.0.0.1"
    """Address of the lag exporter (`LAG_HOST`)."""
    lag_port: int = 8083
    """Port of the lag exporter's `/metrics` (`LAG_PORT`)."""
    lag_groups: tuple[str, ...] = ()
    """Consumer groups the lag exporter watches (`LAG_GROUPS`, comma-separated); empty: all."""
    lag_poll_ms: int = 10_000
    """Milliseconds between two lag samples of the exporter (`LAG_POLL_MS`)."""
    lag_window_samples: int = 10
    """Samples in the sliding window a group's status is judged on (`LAG_WINDOW_SAMPLES`)."""
    lag_cluster_name: str = "clicktrack"
    """Value of the `cluster_name` label of the lag metrics (`LAG_CLUSTER_NAME`)."""
    relay_group: str = "clicktrack-webhooks"
    """Consumer group of the webhook relay (`RELAY_GROUP`)."""
    relay_start_from: str = "latest"
    """Where a relay group with no committed offsets starts (`RELAY_START_FROM`): `latest` (only
    clicks from now on) or `earliest` (everything the topic still holds)."""
    relay_host: str = "127.0.0.1"
    """Address of the relay's health and metrics server (`RELAY_HOST`)."""
    relay_port: int = 8086
    """Port of the relay's health and metrics server (`RELAY_PORT`)."""
    webhook_dlq_topic: str = "webhooks.dlq"
    """Where the relay puts events no retry could deliver (`WEBHOOK_DLQ_TOPIC`)."""
    webhook_max_attempts: int = 6
    """Tries per delivery before it is dead-lettered (`WEBHOOK_MAX_ATTEMPTS`)."""
    webhook_backoff_ms: int = 1000
    """First retry delay in milliseconds, doubled on each retry, with jitter
    (`WEBHOOK_BACKOFF_MS`)."""
    webhook_timeout_ms: int = 10_000
    """Time an endpoint has to answer one delivery, milliseconds (`WEBHOOK_TIMEOUT_MS`)."""
    webhook_batch_max: int = 100
    """Most events in one webhook POST (`WEBHOOK_BATCH_MAX`)."""
    webhook_allow_insecure: bool = False
    """Allow `http://` endpoints and private, loopback or link-local addresses
    (`WEBHOOK_ALLOW_INSECURE`); for local development and tests only."""
    # --- redirector: resolution, bots, publishing and spool ---
    redirector_workers: int = 1
    """Redirector processes sharing the port through SO_REUSEPORT (`REDIRECTOR_WORKERS`)."""
    code_min_length: int = 4
    """Shortest code the redirector looks up; shorter ones are 404 at once (`CODE_MIN_LENGTH`)."""
    code_max_length: int = 32
    """Longest code the redirector looks up (`CODE_MAX_LENGTH`)."""
    local_cache_size: int = 100_000
    """Codes (and as many links) each redirector process keeps in memory (`LOCAL_CACHE_SIZE`)."""
    local_cache_ttl_s: int = 30
    """Seconds a link stays fresh in process memory; bounds staleness when a pub/sub message
    is missed (`LOCAL_CACHE_TTL_S`). An expired link is reloaded in the background while its
    last value keeps being served."""
    local_code_ttl_s: int = 86_400
    """Seconds a code stays in process memory (`LOCAL_CODE_TTL_S`). A code never changes the
    link and recipient it was minted for, so only memory bounds it."""
    negative_cache_ttl_s: int = 60
    """Seconds an unknown code is remembered as unknown, in memory and Redis
    (`NEGATIVE_CACHE_TTL_S`)."""
    redis_cache_ttl_s: int = 3600
    """Seconds a resolved code and its link stay in Redis (`REDIS_CACHE_TTL_S`)."""
    resolve_budget_ms: int = 500
    """Time a cache miss may spend on Redis and Postgres before the answer is 503
    (`RESOLVE_BUDGET_MS`)."""
    publish_high_water: int = 8_000
    """Queue depth at which the redirector stops queueing and spools to disk
    (`PUBLISH_HIGH_WATER`); must not exceed `PUBLISH_QUEUE_SIZE`."""
    publish_linger_ms: int = 50
    """Time the redirector gathers click events before one send to Kafka, ms
    (`PUBLISH_LINGER_MS`). A send costs about a millisecond of CPU whatever its size, so a
    larger batch is far cheaper per click; the visitor never waits for it."""
    publish_send_timeout_ms: int = 5_000
    """Time one batch may take to be acknowledged before it is spooled, ms
    (`PUBLISH_SEND_TIMEOUT_MS`)."""
    spool_dir: str = ".stack/spool/redirector"
    """Folder of this process's spool files; one folder per process (`SPOOL_DIR`)."""
    spool_max_mb: int = 1024
    """Total size of the spool, MiB; past it events are dropped and counted (`SPOOL_MAX_MB`)."""
    spool_file_mb: int = 64
    """Size at which the spool starts a new file, MiB (`SPOOL_FILE_MB`)."""
    spool_fsync_ms: int = 50
    """Interval of the spool's group fsync, ms: the most a crash can lose (`SPOOL_FSYNC_MS`)."""
    bot_cidrs: tuple[str, ...] = ()
    """Client networks whose clicks are bots, e.g. carrier link scanners (`BOT_CIDRS`, comma
    separated CIDRs)."""
    trusted_proxies: tuple[str, ...] = ()
    """Load balancers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, comma separated
    CIDRs); empty: the peer address is the client."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`); unset variables keep their default."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            kafka_bootstrap_servers=_text(
                env, "KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap_servers
            ),
            redis_url=Secret(
                _url(env, "REDIS_URL", defaults.redis_url.reveal(), ("redis", "rediss"))
            ),
            postgres_dsn=Secret(
                _url(
                    env, "POSTGRES_DSN", defaults.postgres_dsn.reveal(), ("postgresql", "postgres")
                )
            ),
            postgres_schema=_identifier(env, "POSTGRES_SCHEMA", defaults.postgres_schema),
            clicks_topic=_text(env, "CLICKS_TOPIC", defaults.clicks_topic),
            dlq_topic=_text(env, "DLQ_TOPIC", defaults.dlq_topic),
            topic_partitions=_int(env, "TOPIC_PARTITIONS", defaults.topic_partitions, 1, 10_000),
            topic_retention_hours=_int(
                env, "TOPIC_RETENTION_HOURS", defaults.topic_retention_hours, 1, 100_000
            ),
            counter_group=_text(env, "COUNTER_GROUP", defaults.counter_group),
            redirector_host=_text(env, "REDIRECTOR_HOST", defaults.redirector_host),
            redirector_port=_int(env, "REDIRECTOR_PORT", defaults.redirector_port, 0, 65535),
            redirector_metrics_host=_text(
                env, "REDIRECTOR_METRICS_HOST", defaults.redirector_metrics_host
            ),
            redirector_metrics_port=_int(
                env, "REDIRECTOR_METRICS_PORT", defaults.redirector_metrics_port, 0, 65535
            ),
            counter_host=_text(env, "COUNTER_HOST", defaults.counter_host),
            counter_port=_int(env, "COUNTER_PORT", defaults.counter_port, 0, 65535),
            short_base_url=_url(
                env, "SHORT_BASE_URL", defaults.short_base_url, ("http", "https")
            ).rstrip("/"),
            publish_queue_size=_int(
                env, "PUBLISH_QUEUE_SIZE", defaults.publish_queue_size, 1, 10_000_000
            ),
            visitor_hash_key=Secret(
                _text(env, "VISITOR_HASH_KEY", defaults.visitor_hash_key.reveal())
            ),
            log_level=_choice(
                env, "LOG_LEVEL", defaults.log_level, ("DEBUG", "INFO", "WARNING", "ERROR")
            ),
            api_host=_text(env, "API_HOST", defaults.api_host),
            api_port=_int(env, "API_PORT", defaults.api_port, 0, 65535),
            api_rate_per_s=_int(env, "API_RATE_PER_S", defaults.api_rate_per_s, 1, 1_000_000),
            api_rate_burst=_int(env, "API_RATE_BURST", defaults.api_rate_burst, 1, 1_000_000),
            api_auth_failures_burst=_int(
                env, "API_AUTH_FAILURES_BURST", defaults.api_auth_failures_burst, 1, 1_000_000
            ),
            short_domain=_short_domain(env, "SHORT_DOMAIN", env.get("SHORT_BASE_URL")),
            code_length=_int(env, "CODE_LENGTH", defaults.code_length, 8, 20),
            dlt_var_limit=_int(env, "DLT_VAR_LIMIT", defaults.dlt_var_limit, 1, 2000),
            operator_token=_operator_token(env, "OPERATOR_TOKEN"),
            counter_batch_max_records=_int(
                env, "COUNTER_BATCH_MAX_RECORDS", defaults.counter_batch_max_records, 1, 100_000
            ),
            counter_batch_wait_ms=_int(
                env, "COUNTER_BATCH_WAIT_MS", defaults.counter_batch_wait_ms, 1, 60_000
            ),
            counter_statements=_int(env, "COUNTER_STATEMENTS", defaults.counter_statements, 1, 8),
            counter_session_timeout_ms=_int(
                env,
                "COUNTER_SESSION_TIMEOUT_MS",
                defaults.counter_session_timeout_ms,
                1_000,
                3_600_000,
            ),
            counter_instance_id=env.get("COUNTER_INSTANCE_ID", "").strip() or None,
            event_max_bytes=_int(
                env, "EVENT_MAX_BYTES", defaults.event_max_bytes, 1_024, 1_000_000
            ),
            dedup_retention_days=_int(
                env, "DEDUP_RETENTION_DAYS", defaults.dedup_retention_days, 2, 3_650
            ),
            topic_replication_factor=_int(
                env, "TOPIC_REPLICATION_FACTOR", defaults.topic_replication_factor, 0, 16
            ),
            lag_host=_text(env, "LAG_HOST", defaults.lag_host),
            lag_port=_int(env, "LAG_PORT", defaults.lag_port, 0, 65535),
            lag_groups=_list(env, "LAG_GROUPS", defaults.lag_groups),
            lag_poll_ms=_int(env, "LAG_POLL_MS", defaults.lag_poll_ms, 100, 3_600_000),
            lag_window_samples=_int(
                env, "LAG_WINDOW_SAMPLES", defaults.lag_window_samples, 2, 1000
            ),
            lag_cluster_name=_text(env, "LAG_CLUSTER_NAME", defaults.lag_cluster_name),
            relay_group=_text(env, "RELAY_GROUP", defaults.relay_group),
            relay_start_from=_choice(
                env, "RELAY_START_FROM", defaults.relay_start_from.upper(), ("LATEST", "EARLIEST")
            ).lower(),
            relay_host=_text(env, "RELAY_HOST", defaults.relay_host),
            relay_port=_int(env, "RELAY_PORT", defaults.relay_port, 0, 65535),
            webhook_dlq_topic=_text(env, "WEBHOOK_DLQ_TOPIC", defaults.webhook_dlq_topic),
            webhook_max_attempts=_int(
                env, "WEBHOOK_MAX_ATTEMPTS", defaults.webhook_max_attempts, 1, 100
            ),
            webhook_backoff_ms=_int(
                env, "WEBHOOK_BACKOFF_MS", defaults.webhook_backoff_ms, 0, 3_600_000
            ),
            webhook_timeout_ms=_int(
                env, "WEBHOOK_TIMEOUT_MS", defaults.webhook_timeout_ms, 100, 600_000
            ),
            webhook_batch_max=_int(env, "WEBHOOK_BATCH_MAX", defaults.webhook_batch_max, 1, 10_000),
            webhook_allow_insecure=_bool(
                env, "WEBHOOK_ALLOW_INSECURE", defaults.webhook_allow_insecure
            ),
            redirector_workers=_int(env, "REDIRECTOR_WORKERS", defaults.redirector_workers, 1, 256),
            code_min_length=_int(env, "CODE_MIN_LENGTH", defaults.code_min_length, 1, 64),
            code_max_length=_int(env, "CODE_MAX_LENGTH", defaults.code_max_length, 1, 64),
            local_cache_size=_int(
                env, "LOCAL_CACHE_SIZE", defaults.local_cache_size, 0, 100_000_000
            ),
            local_cache_ttl_s=_int(env, "LOCAL_CACHE_TTL_S", defaults.local_cache_ttl_s, 0, 86_400),
            local_code_ttl_s=_int(
                env, "LOCAL_CODE_TTL_S", defaults.local_code_ttl_s, 0, 30 * 86_400
            ),
            negative_cache_ttl_s=_int(
                env, "NEGATIVE_CACHE_TTL_S", defaults.negative_cache_ttl_s, 0, 86_400
            ),
            redis_cache_ttl_s=_int(
                env, "REDIS_CACHE_TTL_S", defaults.redis_cache_ttl_s, 1, 30 * 86_400
            ),
            resolve_budget_ms=_int(env, "RESOLVE_BUDGET_MS", defaults.resolve_budget_ms, 1, 60_000),
            publish_high_water=_int(
                env, "PUBLISH_HIGH_WATER", defaults.publish_high_water, 1, 10_000_000
            ),
            publish_linger_ms=_int(env, "PUBLISH_LINGER_MS", defaults.publish_linger_ms, 0, 5_000),
            publish_send_timeout_ms=_int(
                env, "PUBLISH_SEND_TIMEOUT_MS", defaults.publish_send_timeout_ms, 100, 600_000
            ),
            spool_dir=_text(env, "SPOOL_DIR", defaults.spool_dir),
            spool_max_mb=_int(env, "SPOOL_MAX_MB", defaults.spool_max_mb, 1, 10_000_000),
            spool_file_mb=_int(env, "SPOOL_FILE_MB", defaults.spool_file_mb, 1, 4096),
            spool_fsync_ms=_int(env, "SPOOL_FSYNC_MS", defaults.spool_fsync_ms, 1, 10_000),
            bot_cidrs=_cidrs(env, "BOT_CIDRS", defaults.bot_cidrs),
            trusted_proxies=_cidrs(env, "TRUSTED_PROXIES", defaults.trusted_proxies),
        )._checked()

    def _checked(self) -> Settings:
        if self.dedup_retention_days * 24 <= self.topic_retention_hours:
            raise SettingsError(
                f"DEDUP_RETENTION_DAYS ({self.dedup_retention_days}) must cover more than the topic"
                f" retention (TOPIC_RETENTION_HOURS={self.topic_retention_hours}): a redelivered"
                " event must still find its id"
            )
        if self.code_min_length > self.code_max_length:
            raise SettingsError("CODE_MIN_LENGTH must not exceed CODE_MAX_LENGTH")
        if self.publish_high_water > self.publish_queue_size:
            raise SettingsError("PUBLISH_HIGH_WATER must not exceed PUBLISH_QUEUE_SIZE")
        return self


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    if not value:
        raise SettingsError(f"{name} is set but empty")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _list(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _text(env, name, default)
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme not in schemes:
        raise SettingsError(
            f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)},"
            f" got {mask_url(value)!r}"
        )
    return value


def _identifier(env: Mapping[str, str], name: str, default: str) -> str:
    value = _text(env, name, default)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise SettingsError(f"{name} must be a lower-case SQL identifier, got {value!r}")
    return value


def _short_domain(env: Mapping[str, str], name: str, base_url: str | None) -> str:
    default = (base_url or Settings.short_base_url).strip().rstrip("/")
    value = _text(env, name, default.split("://", 1)[-1])
    if any(ch.isspace() or not ch.isprintable() for ch in value) or value.endswith("/"):
        raise SettingsError(
            f"{name} must be a host without spaces or a trailing '/', got {value!r}"
        )
    return value


def _operator_token(env: Mapping[str, str], name: str) -> Secret:
    value = env.get(name, "").strip()
    if value and len(value) < 32:
        raise SettingsError(f"{name} must be at least 32 characters (it guards the operator API)")
    return Secret(value)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _text(env, name, default).upper()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _cidrs(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    found: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(f"{name} must list CIDRs like 10.0.0.0/8, got {part!r}") from None
    return tuple(found)
