"""Settings read once from the environment into frozen sections.

Kafka, Postgres, Redis, the shape of short links and logging are the sections several processes
share; the redirector, the counter, the API, the relay and the lag exporter have one each. Every
variable is one field of one section: its docstring names the variable and says what it does, its
default matches the native stack (`make up`), and `var(...)` states what a value must be. The
generic loader (`shared.variables.load`) reads any section from those definitions; `Settings` holds
one of each, and `Settings.from_env(sections=...)` reads only the sections a process names (the
others keep their defaults and are never looked at), so a malformed variable of another service
cannot stop it.

The service sections are in `shared.service_settings`, rather than next to their services: the
CLI and the tests build them all, the API reads the counter's group to report its lag, and
`shared` must not import from `services`.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, ClassVar

from shared.errors import SettingsError
from shared.service_settings import (
    ApiSettings,
    CounterSettings,
    LagSettings,
    RedirectorSettings,
    RelaySettings,
)
from shared.variables import (
    Secret,
    Section,
    attributes,
    bare_host,
    environment,
    is_production,
    load,
    mask_url,
    no_trailing_slash,
    sql_identifier,
    var,
    variable,
    variables,
    write_dev_keys,
)

__all__ = [
    "ApiSettings",
    "CounterSettings",
    "KafkaSettings",
    "LagSettings",
    "LinkSettings",
    "LogSettings",
    "PostgresSettings",
    "RedirectorSettings",
    "RedisSettings",
    "RelaySettings",
    "Secret",
    "Settings",
    "mask_url",
]


@dataclass(frozen=True)
class KafkaSettings(Section):
    """Where Kafka is and how the clicks topics are made; read by every process."""

    prefix: ClassVar[str] = "KAFKA_"

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated host:port list of Kafka brokers (`KAFKA_BOOTSTRAP_SERVERS`)."""
    clicks_topic: str = var("clicks.v1", env="CLICKS_TOPIC")
    """Topic the redirector publishes click events to (`CLICKS_TOPIC`)."""
    dlq_topic: str = var("clicks.dlq", env="DLQ_TOPIC")
    """Dead-letter topic for events the counter cannot read (`DLQ_TOPIC`)."""
    topic_partitions: int = var(6, low=1, high=10_000, env="TOPIC_PARTITIONS")
    """Partitions of the clicks topic when `clicktrack topics` creates it (`TOPIC_PARTITIONS`)."""
    topic_retention_hours: int = var(168, low=1, high=100_000, env="TOPIC_RETENTION_HOURS")
    """Retention of the clicks topic, hours (`TOPIC_RETENTION_HOURS`, default 7 days)."""
    topic_replication_factor: int = var(0, low=0, high=16, env="TOPIC_REPLICATION_FACTOR")
    """Replicas per partition when topics are created (`TOPIC_REPLICATION_FACTOR`); 0 means
    min(3, brokers in the cluster). With more than one replica, `min.insync.replicas` is set to
    replicas - 1."""


@dataclass(frozen=True)
class PostgresSettings(Section):
    """Where the tables are."""

    prefix: ClassVar[str] = "POSTGRES_"

    dsn: Secret = var(
        Secret("postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack"),
        schemes=("postgresql", "postgres"),
    )
    """asyncpg DSN (`POSTGRES_DSN`)."""
    schema: str = var("public", check=sql_identifier)
    """Schema the tables live in (`POSTGRES_SCHEMA`); tests use one schema per test."""
    statement_timeout_ms: int = var(60_000, low=100, high=86_400_000)
    """Longest a statement of a service may run before Postgres cancels it, ms
    (`POSTGRES_STATEMENT_TIMEOUT_MS`): one tenant's runaway query cannot hold a connection and
    its locks for long. Migrations run without it."""
    idle_in_transaction_timeout_ms: int = var(30_000, low=100, high=86_400_000)
    """Longest a connection may sit idle inside an open transaction before Postgres ends its
    session, ms (`POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS`): a stalled client cannot pin a pool
    connection and hold back vacuum."""


@dataclass(frozen=True)
class RedisSettings(Section):
    """Where the link cache and its invalidations are."""

    prefix: ClassVar[str] = "REDIS_"

    url: Secret = var(Secret("redis://127.0.0.1:6379/0"), schemes=("redis", "rediss"))
    """Redis URL, may carry a password (`REDIS_URL`)."""


@dataclass(frozen=True)
class LinkSettings(Section):
    """What short links look like: the redirector serves them, the API and the CLI mint them."""

    prefix: ClassVar[str] = ""

    short_base_url: str = var(
        "http://127.0.0.1:8080", schemes=("http", "https"), check=no_trailing_slash
    )
    """Base of the short links handed out, without a trailing slash (`SHORT_BASE_URL`)."""
    short_domain: str = var("127.0.0.1:8080", check=bare_host)
    """What an SMS carries before `/<code>`: the redirector's host, optionally with a scheme or
    port (`SHORT_DOMAIN`; default: SHORT_BASE_URL without its scheme)."""
    code_length: int = var(10, low=8, high=20)
    """Characters in a new short code, base62 (`CODE_LENGTH`, 8 to 20): 62**10 is about 8e17,
    so guessing a live code is hopeless. Every minting path (API, CLI, demo) takes it from here."""
    code_cache_ttl_s: int = var(2 * 86_400, low=60, high=90 * 86_400)
    """Seconds a code minted through the API or the CLI stays in the Redis cache
    (`CODE_CACHE_TTL_S`): most taps of an SMS come within a day; a later one reads Postgres."""

    @classmethod
    def derived(cls, env: Mapping[str, str], values: dict[str, Any]) -> dict[str, Any]:
        if "SHORT_DOMAIN" not in env:  # the redirector's host, taken from the base URL
            base = values.get("short_base_url", cls.short_base_url)
            values["short_domain"] = bare_host("SHORT_DOMAIN", base.split("://", 1)[-1])
        return values


@dataclass(frozen=True)
class LogSettings(Section):
    """Logging, the same in every process."""

    prefix: ClassVar[str] = "LOG_"

    level: str = var("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    """Root log level (`LOG_LEVEL`)."""


@dataclass(frozen=True)
class Settings:
    """One of each section; a process reads the ones it names (`from_env(sections=...)`)."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    links: LinkSettings = field(default_factory=LinkSettings)
    log: LogSettings = field(default_factory=LogSettings)
    redirector: RedirectorSettings = field(default_factory=RedirectorSettings)
    counter: CounterSettings = field(default_factory=CounterSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    lag: LagSettings = field(default_factory=LagSettings)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Each section's attribute name and class, in field order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in fields(cls)}

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        """The names of the environment variables the settings read, section by section."""
        return tuple(name for section in cls.sections().values() for name in variables(section))

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, sections: Iterable[str] | None = None
    ) -> Settings:
        """Read `sections` (default: all) from `env` (default: the environment over `.env`);
        the sections not named, and the unset variables, keep their defaults."""
        env = environment() if env is None else env
        is_production(env)  # a misspelt CLICKTRACK_ENV is an error, not development
        known = cls.sections()
        wanted = list(known) if sections is None else list(sections)
        if unknown := set(wanted) - set(known):
            raise ValueError(f"no such settings section: {', '.join(sorted(unknown))}")
        settings = cls(**{name: load(known[name], env) for name in wanted})  # type: ignore[arg-type]
        if {"kafka", "counter"} <= set(wanted):
            settings._check_retention()
        return settings

    @classmethod
    def for_process(cls, sections: Iterable[str]) -> Settings:
        """`from_env(sections=...)` for a process's entry point: a setting that is missing or
        malformed ends the process with exit status 2 and one line naming the variable."""
        try:
            return cls.from_env(sections=sections)
        except SettingsError as exc:
            sys.stderr.write(f"clicktrack: refusing to start: {exc}\n")
            raise SystemExit(2) from None

    @classmethod
    def generated_keys(cls) -> tuple[str, ...]:
        """The variables of the keys a process makes for itself when they are not set (and
        that production requires): what `make up` writes to `.stack/dev-keys.env`."""
        return tuple(
            variable(section, f)
            for section in cls.sections().values()
            for f in fields(section)  # type: ignore[arg-type]
            if f.default_factory is not MISSING
            and getattr(f.metadata.get("rule"), "production", False)
        )

    def changed(self, **values: Any) -> Settings:
        """These settings with some values replaced, each named by its variable
        (`s.changed(POSTGRES_SCHEMA="t_1", LAG_POLL_MS=100)`); values are typed, not text."""
        where = {
            variable: (name, attribute)
            for name, section in self.sections().items()
            for variable, attribute in attributes(section).items()
        }
        by_section: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            section, attribute = where[name]
            by_section.setdefault(section, {})[attribute] = value
        return replace(self, **{s: replace(getattr(self, s), **v) for s, v in by_section.items()})

    def _check_retention(self) -> None:
        days, hours = self.counter.dedup_retention_days, self.kafka.topic_retention_hours
        if days * 24 <= hours:
            raise SettingsError(
                f"DEDUP_RETENTION_DAYS ({days}) must cover more than the topic"
                f" retention (TOPIC_RETENTION_HOURS={hours}): a redelivered"
                " event must still find its id"
            )
        visitors = self.counter.visitor_retention_days
        if visitors <= days:
            raise SettingsError(
                f"VISITOR_RETENTION_DAYS ({visitors}) must exceed DEDUP_RETENTION_DAYS ({days}):"
                " the counter takes clicks that old, and must never write a dropped month"
            )


def main(argv: list[str] | None = None) -> int:
    """`python -m shared.settings --dev-keys`: write `.stack/dev-keys.env`, or add the keys it
    lacks."""
    parser = argparse.ArgumentParser(prog="python -m shared.settings", description=main.__doc__)
    parser.add_argument("--dev-keys", action="store_true", help="write the development keys")
    args = parser.parse_args(argv)
    if args.dev_keys:
        written = write_dev_keys(Settings.generated_keys())
        print("wrote keys to .stack/dev-keys.env" if written else "kept .stack/dev-keys.env")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
