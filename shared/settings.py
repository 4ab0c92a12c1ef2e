"""Settings read once from the environment into a frozen record.

Every variable is one field of `Settings`: its name upper-cased is the variable, its docstring says
what it does, its default matches the native stack (`make up`), and `var(...)` states what a value
must be (bounds, URL schemes, choices, a check). One loader, `Settings.from_env`, reads every
field from those definitions: a new variable is one field, nothing else. A malformed value raises
`SettingsError` naming the variable. Order, as starlette's: the environment, then a `.env` file
in the working folder (if any), then the defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

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
class Rule:
    """What a variable's value must be, beyond its type (the field's annotation)."""

    low: int | None = None
    """Smallest whole number allowed."""
    high: int | None = None
    """Largest whole number allowed."""
    schemes: tuple[str, ...] = ()
    """A URL with one of these schemes."""
    choices: tuple[str, ...] = ()
    """One of these, in any case; stored spelled as here."""
    empty: bool = False
    """May be set to nothing (otherwise "set but empty" is an error)."""
    check: Callable[[str, str], str] | None = None
    """`check(variable, value)`: the value to keep, or `SettingsError`; for a list, per item."""


def var(default: Any, **rule: Any) -> Any:
    """A settings field with its default and its `Rule`."""
    return field(default=default, metadata={"rule": Rule(**rule)})


def _identifier(name: str, value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise SettingsError(f"{name} must be a lower-case SQL identifier, got {value!r}")
    return value


def _no_trailing_slash(name: str, value: str) -> str:
    return value.rstrip("/")


def _host(name: str, value: str) -> str:
    if any(ch.isspace() or not ch.isprintable() for ch in value) or value.endswith("/"):
        raise SettingsError(
            f"{name} must be a host without spaces or a trailing '/', got {value!r}"
        )
    return value


def _operator_token(name: str, value: str) -> str:
    if value and len(value) < 32:
        raise SettingsError(f"{name} must be at least 32 characters (it guards the operator API)")
    return value


def _cidr(name: str, value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise SettingsError(f"{name} must list CIDRs like 10.0.0.0/8, got {value!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything a Clicktrack process needs to know about its surroundings."""

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers (`KAFKA_BOOTSTRAP_SERVERS`)."""
    redis_url: Secret = var(Secret("redis://127.0.0.1:6379/0"), schemes=("redis", "rediss"))
    """Redis URL, may carry a password (`REDIS_URL`)."""
    postgres_dsn: Secret = var(
        Secret("postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack"),
        schemes=("postgresql", "postgres"),
    )
    """asyncpg DSN (`POSTGRES_DSN`)."""
    postgres_schema: str = var("public", check=_identifier)
    """Schema the tables live in (`POSTGRES_SCHEMA`); tests use one schema per test."""
    clicks_topic: str = "clicks.v1"
    """Topic the redirector publishes click events to (`CLICKS_TOPIC`)."""
    dlq_topic: str = "clicks.dlq"
    """Dead-letter topic for events the counter cannot read (`DLQ_TOPIC`)."""
    topic_partitions: int = var(6, low=1, high=10_000)
    """Partitions of the clicks topic when `clicktrack topics` creates it (`TOPIC_PARTITIONS`)."""
    topic_retention_hours: int = var(168, low=1, high=100_000)
    """Retention of the clicks topic, hours (`TOPIC_RETENTION_HOURS`, default 7 days)."""
    counter_group: str = "clicktrack-counter"
    """Consumer group id of the counter (`COUNTER_GROUP`)."""
    redirector_host: str = "127.0.0.1"
    """Address the redirector listens on (`REDIRECTOR_HOST`)."""
    redirector_port: int = var(8080, low=0, high=65535)
    """Port of the redirector (`REDIRECTOR_PORT`)."""
    redirector_metrics_host: str = "127.0.0.1"
    """Address of the redirector's `/metrics`, apart from the public port
    (`REDIRECTOR_METRICS_HOST`)."""
    redirector_metrics_port: int = var(8090, low=0, high=65535)
    """Port of the redirector's `/metrics` (`REDIRECTOR_METRICS_PORT`); with N workers, worker
    i uses this port + i. The public port does not serve `/metrics`."""
    counter_host: str = "127.0.0.1"
    """Address of the counter's health and metrics server (`COUNTER_HOST`)."""
    counter_port: int = var(8081, low=0, high=65535)
    """Port of the counter's health and metrics server (`COUNTER_PORT`)."""
    short_base_url: str = var(
        "http://127.0.0.1:8080", schemes=("http", "https"), check=_no_trailing_slash
    )
    """Base of the short links handed out, without a trailing slash (`SHORT_BASE_URL`)."""
    publish_queue_size: int = var(10_000, low=1, high=10_000_000)
    """Events the redirector holds in memory for the sink (`PUBLISH_QUEUE_SIZE`)."""
    visitor_hash_key: Secret = Secret("dev-only-visitor-key")
    """Key of the HMAC that turns IP and user agent into a visitor id (`VISITOR_HASH_KEY`)."""
    log_level: str = var("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    """Root log level (`LOG_LEVEL`)."""
    api_host: str = "127.0.0.1"
    """Address the links API listens on (`API_HOST`)."""
    api_port: int = var(8082, low=0, high=65535)
    """Port of the links API (`API_PORT`)."""
    api_rate_per_s: int = var(50, low=1, high=1_000_000)
    """Requests per second one caller (API key, or address without one) may make to one API
    process (`API_RATE_PER_S`); over it: 429 with Retry-After."""
    api_rate_burst: int = var(100, low=1, high=1_000_000)
    """Requests a caller may make at once before the rate applies (`API_RATE_BURST`)."""
    api_auth_failures_burst: int = var(20, low=1, high=1_000_000)
    """Refused credentials one client address may send before it is slowed to one per 5 s
    (`API_AUTH_FAILURES_BURST`): guessing keys stays hopeless."""
    short_domain: str = var("127.0.0.1:8080", check=_host)
    """What an SMS carries before `/<code>`: the redirector's host, optionally with a scheme or
    port (`SHORT_DOMAIN`; default: SHORT_BASE_URL without its scheme)."""
    code_length: int = var(10, low=8, high=20)
    """Characters in a new short code, base62 (`CODE_LENGTH`, 8 to 20): 62**10 is about 8e17,
    so guessing a live code is hopeless. Every minting path (API, CLI, demo) takes it from here."""
    dlt_var_limit: int = var(30, low=1, high=2000)
    """Characters a DLT `{#var#}` value may hold (`DLT_VAR_LIMIT`); the short link must fit."""
    operator_token: Secret = var(Secret(""), empty=True, check=_operator_token)
    """Bearer credential of the operator API (`OPERATOR_TOKEN`, at least 32 characters);
    unset: the operator routes are refused and only the CLI can create organisations."""
    counter_batch_max_records: int = var(10_000, low=1, high=100_000)
    """Most records the counter takes into one batch, and so one transaction
    (`COUNTER_BATCH_MAX_RECORDS`). Reached only with a backlog (a steady stream fills a batch for
    `counter_batch_wait_ms`); then each counter row a batch touches is written once for more
    clicks (measured sizes: docs/operations.md, Scaling)."""
    counter_batch_wait_ms: int = var(100, low=1, high=60_000)
    """Longest the counter waits to fill a batch, milliseconds (`COUNTER_BATCH_WAIT_MS`)."""
    counter_statements: int = var(2, low=1, high=8)
    """Postgres statements a batch is split into, run at once on their own connections, each
    taking whole campaigns so that no two write the same row (`COUNTER_STATEMENTS`; 1: one
    statement that also stores the offsets)."""
    counter_session_timeout_ms: int = var(10_000, low=1_000, high=3_600_000)
    """Kafka group session timeout of the counter, milliseconds: how long a dead member holds its
    partitions (`COUNTER_SESSION_TIMEOUT_MS`; the broker accepts 6000 and more by default)."""
    counter_instance_id: str | None = None
    """Static group membership id of this counter process (`COUNTER_INSTANCE_ID`, unset by
    default): a restarted process with the same id takes its partitions back at once instead of
    waiting for the session timeout, and no rebalance moves them meanwhile; the other side of it:
    the partitions of a process that stops for good wait out the session timeout."""
    event_max_bytes: int = var(65_536, low=1_024, high=1_000_000)
    """Largest click record the counter accepts; bigger ones are dead-lettered, bytes
    (`EVENT_MAX_BYTES`)."""
    dedup_retention_days: int = var(9, low=2, high=3_650)
    """Days of event ids kept for deduplication (`DEDUP_RETENTION_DAYS`); must exceed the topic's
    retention so that any record still in the topic finds its id. Pruned by dropping daily
    partitions."""
    # --- operations: topic replication, the lag exporter, the webhook relay (issue 7) ---
    topic_replication_factor: int = var(0, low=0, high=16)
    """Replicas per partition when topics are created (`TOPIC_REPLICATION_FACTOR`); 0 means
    min(3, brokers in the cluster). With more than one replica, `min.insync.replicas` is set to
    replicas - 1."""
    lag_host: str = "127.0.0.1"
    """Address of the lag exporter (`LAG_HOST`)."""
    lag_port: int = var(8083, low=0, high=65535)
    """Port of the lag exporter's `/metrics` (`LAG_PORT`)."""
    lag_groups: tuple[str, ...] = ()
    """Consumer groups the lag exporter watches (`LAG_GROUPS`, comma-separated); empty: all."""
    lag_poll_ms: int = var(10_000, low=100, high=3_600_000)
    """Milliseconds between two lag samples of the exporter (`LAG_POLL_MS`)."""
    lag_window_samples: int = var(10, low=2, high=1000)
    """Samples in the sliding window a group's status is judged on (`LAG_WINDOW_SAMPLES`)."""
    lag_cluster_name: str = "clicktrack"
    """Value of the `cluster_name` label of the lag metrics (`LAG_CLUSTER_NAME`)."""
    relay_group: str = "clicktrack-webhooks"
    """Consumer group of the webhook relay (`RELAY_GROUP`)."""
    relay_start_from: str = var("latest", choices=("latest", "earliest"))
    """Where a relay group with no committed offsets starts (`RELAY_START_FROM`): `latest` (only
    clicks from now on) or `earliest` (everything the topic still holds)."""
    relay_host: str = "127.0.0.1"
    """Address of the relay's health and metrics server (`RELAY_HOST`)."""
    relay_port: int = var(8086, low=0, high=65535)
    """Port of the relay's health and metrics server (`RELAY_PORT`)."""
    webhook_dlq_topic: str = "webhooks.dlq"
    """Where the relay puts events no retry could deliver (`WEBHOOK_DLQ_TOPIC`)."""
    webhook_max_attempts: int = var(6, low=1, high=100)
    """Tries per delivery before it is dead-lettered (`WEBHOOK_MAX_ATTEMPTS`)."""
    webhook_backoff_ms: int = var(1000, low=0, high=3_600_000)
    """First retry delay in milliseconds, doubled on each retry, with jitter
    (`WEBHOOK_BACKOFF_MS`)."""
    webhook_timeout_ms: int = var(10_000, low=100, high=600_000)
    """Time an endpoint has to answer one delivery, milliseconds (`WEBHOOK_TIMEOUT_MS`)."""
    webhook_batch_max: int = var(100, low=1, high=10_000)
    """Most events in one webhook POST (`WEBHOOK_BATCH_MAX`)."""
    webhook_allow_insecure: bool = False
    """Allow `http://` endpoints and private, loopback or link-local addresses
    (`WEBHOOK_ALLOW_INSECURE`); for local development and tests only."""
    # --- redirector: resolution, bots, publishing and spool ---
    redirector_workers: int = var(1, low=1, high=256)
    """Redirector processes sharing the port through SO_REUSEPORT (`REDIRECTOR_WORKERS`)."""
    code_min_length: int = var(4, low=1, high=64)
    """Shortest code the redirector looks up; shorter ones are 404 at once (`CODE_MIN_LENGTH`)."""
    code_max_length: int = var(32, low=1, high=64)
    """Longest code the redirector looks up (`CODE_MAX_LENGTH`)."""
    local_cache_size: int = var(100_000, low=0, high=100_000_000)
    """Codes (and as many links) each redirector process keeps in memory (`LOCAL_CACHE_SIZE`)."""
    local_cache_ttl_s: int = var(30, low=0, high=86_400)
    """Seconds a link stays fresh in process memory; bounds staleness when a pub/sub message
    is missed (`LOCAL_CACHE_TTL_S`). An expired link is reloaded in the background while its
    last value keeps being served."""
    local_code_ttl_s: int = var(86_400, low=0, high=30 * 86_400)
    """Seconds a code stays in process memory (`LOCAL_CODE_TTL_S`). A code never changes the
    link and recipient it was minted for, so only memory bounds it."""
    negative_cache_ttl_s: int = var(60, low=0, high=86_400)
    """Seconds an unknown code is remembered as unknown, in memory and Redis
    (`NEGATIVE_CACHE_TTL_S`)."""
    redis_cache_ttl_s: int = var(3600, low=1, high=30 * 86_400)
    """Seconds a resolved code and its link stay in Redis (`REDIS_CACHE_TTL_S`)."""
    resolve_budget_ms: int = var(500, low=1, high=60_000)
    """Time a cache miss may spend on Redis and Postgres before the answer is 503
    (`RESOLVE_BUDGET_MS`)."""
    publish_high_water: int = var(8_000, low=1, high=10_000_000)
    """Queue depth at which the redirector stops queueing and spools to disk
    (`PUBLISH_HIGH_WATER`); must not exceed `PUBLISH_QUEUE_SIZE`."""
    publish_linger_ms: int = var(50, low=0, high=5_000)
    """Time the redirector gathers click events before one send to Kafka, ms
    (`PUBLISH_LINGER_MS`). A send costs nearly the same CPU whatever its size, so a larger
    batch is far cheaper per click (docs/redirector.md); the visitor never waits for it."""
    publish_send_timeout_ms: int = var(5_000, low=100, high=600_000)
    """Time one batch may take to be acknowledged before it is spooled, ms
    (`PUBLISH_SEND_TIMEOUT_MS`)."""
    spool_dir: str = ".stack/spool/redirector"
    """Folder of this process's spool files; one folder per process (`SPOOL_DIR`)."""
    spool_max_mb: int = var(1024, low=1, high=10_000_000)
    """Total size of the spool, MiB; past it events are dropped and counted (`SPOOL_MAX_MB`)."""
    spool_file_mb: int = var(64, low=1, high=4096)
    """Size at which the spool starts a new file, MiB (`SPOOL_FILE_MB`)."""
    spool_fsync_ms: int = var(50, low=1, high=10_000)
    """Interval of the spool's group fsync, ms: the most a crash can lose (`SPOOL_FSYNC_MS`)."""
    bot_cidrs: tuple[str, ...] = var((), check=_cidr)
    """Client networks whose clicks are bots, e.g. carrier link scanners (`BOT_CIDRS`, comma
    separated CIDRs)."""
    trusted_proxies: tuple[str, ...] = var((), check=_cidr)
    """Load balancers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, comma separated
    CIDRs); empty: the peer address is the client."""

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """The names of the environment variables the settings read, in field order."""
        return tuple(f.name.upper() for f in fields(cls))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: the environment over `.env`); unset variables
        keep their default."""
        env = _environment() if env is None else env
        hints = typing.get_type_hints(cls)
        values = {
            f.name: _parse(f.name.upper(), env[f.name.upper()], hints[f.name], _rule_of(f))
            for f in fields(cls)
            if f.name.upper() in env
        }
        if "SHORT_DOMAIN" not in env:  # the redirector's host, taken from the base URL
            base = values.get("short_base_url", cls.short_base_url)
            values["short_domain"] = _host("SHORT_DOMAIN", base.split("://", 1)[-1])
        return cls(**values)._checked()

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


def _environment() -> dict[str, str]:
    """The process's environment over the `.env` file of the working folder, if there is one."""
    dotenv = Path(".env")
    found = dotenv_values(dotenv) if dotenv.is_file() else {}
    return {**{k: v for k, v in found.items() if v is not None}, **os.environ}


def _rule_of(f: Any) -> Rule:
    rule: Rule = f.metadata.get("rule", _NO_RULE)
    return rule


_NO_RULE = Rule()


def _parse(name: str, raw: str, kind: Any, rule: Rule) -> Any:
    """`raw`, the value of variable `name`, as a value of the field's type `kind`."""
    if kind is int:
        return _int(name, raw, rule)
    if kind is bool:
        return _bool(name, raw)
    if kind == tuple[str, ...]:
        parts = (part.strip() for part in raw.split(","))
        return tuple(rule.check(name, p) if rule.check else p for p in parts if p)
    if kind == str | None:
        return raw.strip() or None
    text = _text(name, raw, rule)
    return Secret(text) if kind is Secret else text


def _text(name: str, raw: str, rule: Rule) -> str:
    value = raw.strip()
    if not value and not rule.empty:
        raise SettingsError(f"{name} is set but empty")
    if rule.choices:
        spelled = {choice.lower(): choice for choice in rule.choices}
        if value.lower() not in spelled:
            raise SettingsError(f"{name} must be one of {', '.join(rule.choices)}, got {value!r}")
        value = spelled[value.lower()]
    if rule.schemes:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in rule.schemes:
            raise SettingsError(
                f"{name} must be a URL starting with"
                f" {' or '.join(s + '://' for s in rule.schemes)}, got {mask_url(value)!r}"
            )
    return rule.check(name, value) if rule.check else value


def _int(name: str, raw: str, rule: Rule) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    low = rule.low if rule.low is not None else value
    high = rule.high if rule.high is not None else value
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")
