"""Which partitions are past their period: days after the dedup window, months once all of them
is older than the visitor period, never the counter's current epoch."""

from __future__ import annotations

from datetime import date

from services.counter.retention import expired, month_of, next_month, partition_name


def test_months_and_their_names() -> None:
    assert month_of(date(2026, 12, 31)) == date(2026, 12, 1)
    assert next_month(date(2026, 12, 1)) == date(2027, 1, 1)
    assert next_month(date(2027, 1, 1)) == date(2027, 2, 1)
    assert partition_name("quarter_visitors", date(2026, 2, 1)) == "quarter_visitors_m202602"
    assert partition_name("processed_events", date(2026, 2, 9)) == "processed_events_p20260209"


def test_a_month_goes_once_all_of_it_is_older_than_the_period() -> None:
    have = {
        "quarter_visitors": [date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1)],
        "link_visitors": [date(2025, 10, 1), date(2025, 11, 1)],
        "processed_events": [date(2026, 11, 22), date(2026, 11, 23)],
    }
    # 400 days before 2026-12-02 is 2025-10-28: October is not wholly older yet
    kept = expired(
        have, keep_days=9, visitor_days=400, today=date(2026, 12, 2), epoch=date(2026, 12, 1)
    )
    assert kept == ["processed_events_p20261122"]
    # on 2026-12-05 the cutoff is 2025-10-31; on 2026-12-06, 2025-11-01: October goes
    assert expired(have, keep_days=9, visitor_days=400, today=date(2026, 12, 5),
                   epoch=date(2026, 12, 1)) == ["processed_events_p20261122",
                                                "processed_events_p20261123"]  # fmt: skip
    assert expired(have, keep_days=9, visitor_days=400, today=date(2026, 12, 6),
                   epoch=date(2026, 12, 1))[:2] == ["quarter_visitors_m202510",
                                                    "link_visitors_m202510"]  # fmt: skip


def test_the_current_epoch_is_never_dropped() -> None:
    """A counter that did not move its epoch for long still writes there."""
    have = {"link_visitors": [date(2025, 10, 1)], "quarter_visitors": [date(2025, 10, 1)]}
    gone = expired(
        have, keep_days=9, visitor_days=30, today=date(2026, 12, 2), epoch=date(2025, 10, 1)
    )
    assert gone == ["quarter_visitors_m202510"]
