"""The SQL `CHECK`s on campaign kinds and channels say what `shared.campaigns` says."""

from __future__ import annotations

import re

import pytest

from shared.campaigns import CAMPAIGN_KINDS, CHANNEL_PATTERN
from shared.db import migration_files

_ADD = re.compile(r"ADD CONSTRAINT (\w+)\s+CHECK \((.*?)\)(?:,|;)\s*$", re.MULTILINE)


def latest_checks() -> dict[str, str]:
    """Each named `CHECK` as the last migration that adds it defines it."""
    found: dict[str, str] = {}
    for _, sql in migration_files():
        found.update(_ADD.findall(sql))
    return found


@pytest.mark.parametrize(
    ("constraint", "column"),
    [("campaigns_kind_check", "kind"), ("hourly_counters_campaign_kind_check", "campaign_kind")],
)
def test_the_kind_checks_list_the_kinds(constraint: str, column: str) -> None:
    listed = ", ".join(f"'{kind}'" for kind in CAMPAIGN_KINDS)
    assert latest_checks()[constraint] == f"{column} IN ({listed})"


@pytest.mark.parametrize("constraint", ["campaigns_channel_check", "hourly_counters_channel_check"])
def test_the_channel_checks_use_the_channel_pattern(constraint: str) -> None:
    assert latest_checks()[constraint] == f"channel ~ '{CHANNEL_PATTERN}'"


def test_every_kind_and_channel_check_is_held_here() -> None:
    held = {
        "campaigns_kind_check",
        "hourly_counters_campaign_kind_check",
        "campaigns_channel_check",
        "hourly_counters_channel_check",
    }
    assert {name for name in latest_checks() if "kind" in name or "channel" in name} == held
