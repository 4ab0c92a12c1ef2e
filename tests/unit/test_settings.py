from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import Secret, Settings, mask_url


def test_defaults_match_the_native_stack() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.redis_url.reveal() == "redis://127.0.0.1:6379/0"
    assert s.postgres_dsn.reveal() == "postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack"
    assert (s.clicks_topic, s.dlq_topic, s.topic_partitions) == ("clicks.v1", "clicks.dlq", 6)


def test_values_come_from_the_environment() -> None:
    s = Settings.from_env({"REDIRECTOR_PORT": "9000", "CLICKS_TOPIC": "c", "LOG_LEVEL": "debug"})
    assert (s.redirector_port, s.clicks_topic, s.log_level) == (9000, "c", "DEBUG")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIRECTOR_PORT": "http"}, "REDIRECTOR_PORT must be a whole number, got 'http'"),
        ({"TOPIC_PARTITIONS": "0"}, "TOPIC_PARTITIONS must be between 1 and 10000, got 0"),
        ({"POSTGRES_DSN": "mysql://u:pw@h/db"}, "POSTGRES_DSN must be a URL starting with"),
        ({"POSTGRES_SCHEMA": "x; drop"}, "POSTGRES_SCHEMA must be a lower-case SQL identifier"),
        ({"KAFKA_BOOTSTRAP_SERVERS": " "}, "KAFKA_BOOTSTRAP_SERVERS is set but empty"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
    ],
)
def test_a_malformed_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


def test_a_bad_dsn_error_does_not_show_the_password() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"POSTGRES_DSN": "mysql://u:hunter2@h/db"})
    assert "hunter2" not in str(caught.value)


def test_secrets_are_masked_in_repr_and_str() -> None:
    s = Settings.from_env({"POSTGRES_DSN": "postgresql://u:hunter2@db:5432/x"})
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.postgres_dsn)
    assert "postgresql://u:***@db:5432/x" in repr(s)
    assert "dev-only-visitor-key" not in repr(s)


def test_mask_url_keeps_urls_without_password() -> None:
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert repr(Secret("plain-api-key")) == "Secret('***')"


def test_every_field_is_read_from_its_variable() -> None:
    """A field needs nothing but its definition to be read: set each one, read it back."""
    env: dict[str, str] = {}
    want: dict[str, object] = {}
    for f in fields(Settings):
        rule = f.metadata.get("rule")
        default = getattr(Settings(), f.name)
        if isinstance(default, bool):
            env[f.name.upper()], want[f.name] = "yes", True
        elif isinstance(default, int):
            value = rule.low if rule and rule.low is not None else default + 1
            env[f.name.upper()], want[f.name] = str(value), value
        elif rule is None and (default is None or isinstance(default, str)):
            env[f.name.upper()], want[f.name] = f" {f.name}-set ", f"{f.name}-set"
    assert len(env) > 50
    env["PUBLISH_HIGH_WATER"] = env["PUBLISH_QUEUE_SIZE"]  # the one rule across two variables
    want["publish_high_water"] = want["publish_queue_size"]
    env["DEDUP_RETENTION_DAYS"], want["dedup_retention_days"] = "365", 365
    got = Settings.from_env(env)
    assert {name: getattr(got, name) for name in want} == want


def test_the_environment_wins_over_dotenv_which_wins_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "# local overrides\nCLICKS_TOPIC=from-dotenv\nDLQ_TOPIC='dlq-from-dotenv'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLICKS_TOPIC", "from-environment")
    monkeypatch.delenv("DLQ_TOPIC", raising=False)
    monkeypatch.delenv("COUNTER_GROUP", raising=False)
    s = Settings.from_env()
    assert (s.clicks_topic, s.dlq_topic, s.counter_group) == (
        "from-environment",
        "dlq-from-dotenv",
        "clicktrack-counter",
    )


def test_a_malformed_dotenv_value_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("COUNTER_PORT=eighty\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COUNTER_PORT", raising=False)
    with pytest.raises(SettingsError, match="COUNTER_PORT must be a whole number, got 'eighty'"):
        Settings.from_env()
