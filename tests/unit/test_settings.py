from __future__ import annotations

import inspect
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import Secret, Settings, mask_url
from shared.variables import Rule, attributes, variable


def test_defaults_match_the_native_stack() -> None:
    s = Settings.from_env({})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.redis.url.reveal() == "redis://127.0.0.1:6379/0"
    assert s.postgres.dsn.reveal() == "postgresql://clicktrack:clicktrack@127.0.0.1:5432/clicktrack"
    assert (s.kafka.clicks_topic, s.kafka.dlq_topic, s.kafka.topic_partitions) == (
        "clicks.v1",
        "clicks.dlq",
        6,
    )


def test_values_come_from_the_environment() -> None:
    s = Settings.from_env({"REDIRECTOR_PORT": "9000", "CLICKS_TOPIC": "c", "LOG_LEVEL": "debug"})
    assert (s.redirector.port, s.kafka.clicks_topic, s.log.level) == (9000, "c", "DEBUG")


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
    assert "hunter2" not in str(s.postgres.dsn)
    assert "postgresql://u:***@db:5432/x" in repr(s)
    assert s.redirector.visitor_hash_key.reveal() not in repr(s)


def test_mask_url_keeps_urls_without_password() -> None:
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert repr(Secret("plain-api-key")) == "Secret('***')"


def test_every_field_is_read_from_its_variable() -> None:
    """A field needs nothing but its definition to be read: set each one, read it back."""
    env: dict[str, str] = {}
    want: dict[str, object] = {}
    for kind in Settings.sections().values():
        for f in fields(kind):  # type: ignore[arg-type]
            name, rule = variable(kind, f), f.metadata.get("rule") or Rule()
            default = getattr(kind(), f.name)
            plain = not (rule.choices or rule.schemes or rule.check)
            if isinstance(default, bool):
                env[name], want[name] = "yes", True
            elif isinstance(default, int):
                value = rule.low if rule.low is not None else default + 1
                env[name], want[name] = str(value), value
            elif plain and (default is None or isinstance(default, str)):
                env[name], want[name] = f" {f.name}-set ", f"{f.name}-set"
    assert len(env) > 50
    env["DEDUP_RETENTION_DAYS"], want["DEDUP_RETENTION_DAYS"] = "365", 365
    env["VISITOR_RETENTION_DAYS"], want["VISITOR_RETENTION_DAYS"] = "366", 366
    got = Settings.from_env(env)
    read = {
        name: getattr(getattr(got, section), attribute)
        for section, kind in Settings.sections().items()
        for name, attribute in attributes(kind).items()
    }
    assert {name: read[name] for name in want} == want


def test_every_variable_is_named_once_and_documented() -> None:
    """Names did not change when the settings were split into sections, and none is read twice;
    each field's docstring names its variable (a field a section takes from a base such as
    `Listeners`, in the base, unless the section declares it again)."""
    names = Settings.variables()
    assert len(names) == len(set(names)) == 84
    for kind in Settings.sections().values():
        for name, attribute in attributes(kind).items():
            owner = next(c for c in kind.__mro__ if attribute in vars(c).get("__annotations__", {}))
            source = inspect.getsource(sys.modules[owner.__module__])
            body = source[source.index(f"class {owner.__name__}(") :]
            field_doc = re.search(rf'^    {attribute}: .*?\n    """(.*?)"""', body, re.S | re.M)
            assert field_doc and f"`{name}" in field_doc.group(1), (kind.__name__, name)


def test_a_process_reads_only_its_own_sections() -> None:
    env = {"API_PORT": "not-a-port", "COUNTER_PORT": "9100", "CLICKS_TOPIC": "c"}
    s = Settings.from_env(env, sections=("kafka", "counter"))
    assert (s.counter.port, s.kafka.clicks_topic, s.api.port) == (9100, "c", 8082)
    with pytest.raises(SettingsError, match="API_PORT must be a whole number"):
        Settings.from_env(env, sections=("api",))
    with pytest.raises(ValueError, match="no such settings section: kafak"):
        Settings.from_env({}, sections=("kafak",))


def test_changed_names_values_by_their_variables() -> None:
    s = Settings().changed(POSTGRES_SCHEMA="t_1", LAG_POLL_MS=100, CLICKS_TOPIC="c")
    assert (s.postgres.schema, s.lag.poll_ms, s.kafka.clicks_topic) == ("t_1", 100, "c")
    assert s.redis == Settings().redis


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
    assert (s.kafka.clicks_topic, s.kafka.dlq_topic, s.counter.group) == (
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
