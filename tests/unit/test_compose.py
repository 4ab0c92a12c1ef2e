"""docker-compose.yml cannot run here (no Docker engine); check it agrees with the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def settings_variables() -> set[str]:
    return set(Settings.variables())


def test_compose_has_the_whole_stack_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) == {
        "kafka",
        "redis",
        "postgres",
        "setup",
        "redirector",
        "counter",
        "api",
        "relay",
        "lag-exporter",
    }
    for name in (
        "kafka",
        "redis",
        "postgres",
        "redirector",
        "counter",
        "api",
        "relay",
        "lag-exporter",
    ):
        assert "healthcheck" in services[name], name
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_service_variables_are_settings_variables() -> None:
    known = settings_variables()
    services = compose()["services"]
    for name in ("setup", "redirector", "counter", "api", "relay", "lag-exporter"):
        env = services[name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables Settings does not read: {unknown}"
        parsed = Settings.from_env({k: str(v) for k, v in env.items()})
        assert parsed.kafka.bootstrap_servers == "kafka:9092"
        assert parsed.postgres.dsn.reveal().endswith("@postgres:5432/clicktrack")


def test_published_ports_match_the_configured_ports() -> None:
    services = compose()["services"]
    redirector = Settings.from_env(
        {k: str(v) for k, v in services["redirector"]["environment"].items()}
    )
    counter = Settings.from_env({k: str(v) for k, v in services["counter"]["environment"].items()})
    api = Settings.from_env({k: str(v) for k, v in services["api"]["environment"].items()})
    assert services["redirector"]["ports"] == [f"{redirector.redirector.port}:8080"]
    assert services["counter"]["ports"] == [f"{counter.counter.port}:8081"]
    assert services["api"]["ports"] == [f"{api.api.port}:8082"]
    relay = Settings.from_env({k: str(v) for k, v in services["relay"]["environment"].items()})
    lag = Settings.from_env({k: str(v) for k, v in services["lag-exporter"]["environment"].items()})
    assert services["relay"]["ports"] == [f"{relay.relay.port}:{Settings().relay.port}"]
    assert services["lag-exporter"]["ports"] == [f"{lag.lag.port}:{Settings().lag.port}"]
    defaults = Settings()
    assert (redirector.redirector.port, counter.counter.port, api.api.port) == (
        defaults.redirector.port,
        defaults.counter.port,
        defaults.api.port,
    )


def test_the_api_short_links_point_at_the_published_redirector() -> None:
    services = compose()["services"]
    api = Settings.from_env({k: str(v) for k, v in services["api"]["environment"].items()})
    assert api.links.short_domain == f"127.0.0.1:{services['redirector']['ports'][0].split(':')[0]}"


def test_postgres_credentials_match_the_dsn() -> None:
    services = compose()["services"]
    env = services["postgres"]["environment"]
    dsn = Settings.from_env({"POSTGRES_DSN": services["counter"]["environment"]["POSTGRES_DSN"]})
    assert dsn.postgres.dsn.reveal() == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{env['POSTGRES_DB']}"
    )


def test_the_long_running_services_are_restarted_when_they_fail() -> None:
    # the counter and the relay exit 70 when their consume loop stops (shared.service.run_app)
    services = compose()["services"]
    for name in ("redirector", "counter", "api", "relay", "lag-exporter"):
        assert services[name]["restart"] == "on-failure", name
    assert "restart" not in services["setup"]  # a one-shot job: it runs once


def test_redis_needs_a_password_that_every_service_sends_and_keys_have_no_default() -> None:
    services = compose()["services"]
    redis = services["redis"]
    required = "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
    assert redis["command"][-2:] == ["--requirepass", required]
    assert redis["environment"]["REDISCLI_AUTH"] == required  # the health check authenticates
    assert redis["ports"] == ["127.0.0.1:6379:6379"]
    for name in ("setup", "redirector", "counter", "api", "relay", "lag-exporter"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == f"redis://:{required}@redis:6379/0", name
        for key in Settings.generated_keys():  # compose refuses to start without them
            assert env[key] == f"${{{key}:?set {key}}}", (name, key)


def test_the_apis_metrics_are_off_its_published_port() -> None:
    api = compose()["services"]["api"]
    parsed = Settings.from_env({k: str(v) for k, v in api["environment"].items()})
    assert parsed.api.metrics_port != parsed.api.port
    assert all(str(parsed.api.metrics_port) not in port for port in api["ports"])


def test_redis_evicts_only_the_cache_never_the_counters() -> None:
    """Counters have no TTL and every cache key has one (`shared/link_cache.py`): with
    volatile-lru, both the native stack and compose evict only cache keys."""
    command = compose()["services"]["redis"]["command"]
    policy = command[command.index("--maxmemory-policy") + 1]
    assert policy == "volatile-lru"
    assert command[command.index("--maxmemory") + 1] == "1gb"
    stack = (ROOT / "deploy" / "stack.sh").read_text()
    assert "REDIS_POLICY=volatile-lru" in stack
    assert '--maxmemory "$REDIS_MAXMEMORY" --maxmemory-policy "$REDIS_POLICY"' in stack
