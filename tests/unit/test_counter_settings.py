"""The counter's settings: batch bounds, static membership, a dedup window that must outlive the
topic's retention, and a visitor period that must outlive the dedup window."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import Settings


def test_counter_defaults() -> None:
    s = Settings.from_env({})
    assert (s.counter.batch_max_records, s.counter.batch_wait_ms) == (10_000, 100)
    assert (s.counter.session_timeout_ms, s.counter.instance_id) == (10_000, None)
    assert (s.counter.event_max_bytes, s.counter.dedup_retention_days) == (65_536, 9)
    assert s.counter.visitor_retention_days == 400
    assert s.counter.statements == 2


def test_counter_values_come_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "COUNTER_BATCH_MAX_RECORDS": "500",
            "COUNTER_INSTANCE_ID": " counter-1 ",
            "DEDUP_RETENTION_DAYS": "30",
            "TOPIC_RETENTION_HOURS": "700",
        }
    )
    assert (s.counter.batch_max_records, s.counter.instance_id) == (500, "counter-1")
    assert s.counter.dedup_retention_days == 30


def test_the_dedup_window_must_outlive_the_topic() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TOPIC_RETENTION_HOURS": "240", "DEDUP_RETENTION_DAYS": "10"})
    assert str(caught.value).startswith(
        "DEDUP_RETENTION_DAYS (10) must cover more than the topic retention"
    )


def test_visitor_rows_outlive_the_dedup_window() -> None:
    """The counter takes clicks as old as the dedup window: their visitor months must still be
    there."""
    s = Settings.from_env({"DEDUP_RETENTION_DAYS": "30", "VISITOR_RETENTION_DAYS": "31"})
    assert s.counter.visitor_retention_days == 31
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DEDUP_RETENTION_DAYS": "30", "VISITOR_RETENTION_DAYS": "30"})
    assert str(caught.value).startswith(
        "VISITOR_RETENTION_DAYS (30) must exceed DEDUP_RETENTION_DAYS (30)"
    )


def test_an_oversized_batch_names_its_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"COUNTER_BATCH_MAX_RECORDS": "0"})
    assert str(caught.value) == "COUNTER_BATCH_MAX_RECORDS must be between 1 and 100000, got 0"


def test_counter_statements_default_and_bounds() -> None:
    assert Settings.from_env({}).counter.statements == 2
    assert Settings.from_env({"COUNTER_STATEMENTS": "1"}).counter.statements == 1
    with pytest.raises(SettingsError, match="COUNTER_STATEMENTS must be between 1 and 8, got 9"):
        Settings.from_env({"COUNTER_STATEMENTS": "9"})
