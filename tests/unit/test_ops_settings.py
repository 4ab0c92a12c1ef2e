"""Settings of the lag exporter, the webhook relay and topic replication."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.lag.port, s.lag.groups, s.lag.poll_ms, s.lag.window_samples) == (8083, (), 10_000, 10)
    assert (s.relay.group, s.relay.port, s.relay.start_from) == (
        "clicktrack-webhooks",
        8086,
        "latest",
    )
    assert (
        s.relay.webhook_max_attempts,
        s.relay.webhook_backoff_ms,
        s.relay.webhook_allow_insecure,
    ) == (
        6,
        1000,
        False,
    )
    assert (s.relay.webhook_dlq_topic, s.kafka.topic_replication_factor) == ("webhooks.dlq", 0)


def test_values_come_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "LAG_GROUPS": " clicktrack-counter, warehouse ,,",
            "LAG_WINDOW_SAMPLES": "3",
            "RELAY_START_FROM": "earliest",
            "WEBHOOK_ALLOW_INSECURE": "yes",
            "TOPIC_REPLICATION_FACTOR": "3",
        }
    )
    assert s.lag.groups == ("clicktrack-counter", "warehouse")
    assert (s.lag.window_samples, s.relay.start_from, s.relay.webhook_allow_insecure) == (
        3,
        "earliest",
        True,
    )
    assert s.kafka.topic_replication_factor == 3
    assert Settings.from_env({"WEBHOOK_ALLOW_INSECURE": "0"}).relay.webhook_allow_insecure is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WEBHOOK_ALLOW_INSECURE": "maybe"},
            "WEBHOOK_ALLOW_INSECURE must be true or false, got 'maybe'",
        ),
        ({"LAG_WINDOW_SAMPLES": "1"}, "LAG_WINDOW_SAMPLES must be between 2 and 1000, got 1"),
        ({"LAG_POLL_MS": "10"}, "LAG_POLL_MS must be between 100 and 3600000, got 10"),
        ({"RELAY_START_FROM": "middle"}, "RELAY_START_FROM must be one of latest, earliest"),
        ({"WEBHOOK_MAX_ATTEMPTS": "0"}, "WEBHOOK_MAX_ATTEMPTS must be between 1 and 100, got 0"),
    ],
)
def test_a_malformed_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
