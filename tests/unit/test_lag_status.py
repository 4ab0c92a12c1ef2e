"""Burrow-style evaluation rules over a window of (committed, end) samples."""

from __future__ import annotations

import pytest

from services.ops.lag_status import LagHistory, Sample, Status, evaluate, worst


def window(*points: tuple[int, int]) -> list[Sample]:
    """Samples one second apart from (committed, end) pairs."""
    return [Sample(float(i), committed, end) for i, (committed, end) in enumerate(points)]


@pytest.mark.parametrize(
    ("points", "has_members", "expected"),
    [
        # caught up now: OK whatever happened before
        (((5, 9), (5, 12), (12, 12)), True, Status.OK),
        (((5, 9), (5, 12), (12, 12)), False, Status.OK),
        # lag, offset still, nobody in the group: commits stopped
        (((5, 9), (5, 12), (5, 15)), False, Status.STOP),
        # lag, offset still, but a member is there: alive and stuck
        (((5, 9), (5, 12), (5, 15)), True, Status.STALL),
        # lag constant and offset still (no new records): still a stall
        (((5, 9), (5, 9), (5, 9)), True, Status.STALL),
        # offsets move but lag never shrinks: falling behind
        (((5, 9), (7, 12), (9, 14)), True, Status.WARN),
        (((5, 9), (7, 11), (9, 13)), True, Status.WARN),
        # offsets move and lag shrank once: keeping up
        (((5, 9), (8, 11), (9, 14)), True, Status.OK),
        # lag was zero inside the window: it caught up, so OK (Burrow rule)
        (((9, 9), (9, 12), (9, 15)), True, Status.OK),
        # the committed offset went back
        (((9, 12), (4, 12), (6, 12)), True, Status.REWIND),
        # a group without members whose offsets move (manual assignment) is not stopped
        (((5, 9), (7, 12), (8, 12)), False, Status.OK),
    ],
)
def test_rules(points: tuple[tuple[int, int], ...], has_members: bool, expected: Status) -> None:
    assert evaluate(window(*points), has_members=has_members, window=3) is expected


def test_stall_and_warn_need_a_full_window() -> None:
    short = window((5, 9), (5, 12))
    assert evaluate(short, has_members=True, window=3) is Status.OK
    assert evaluate(short, has_members=True, window=2) is Status.STALL
    assert evaluate(window((5, 9), (7, 12)), has_members=True, window=2) is Status.WARN


def test_a_single_sample_says_ok_or_stop() -> None:
    assert evaluate(window((5, 9)), has_members=False, window=1) is Status.STOP
    assert evaluate(window((5, 9)), has_members=True, window=5) is Status.OK
    assert evaluate(window((9, 9)), has_members=False, window=1) is Status.OK
    assert evaluate([], has_members=False, window=3) is Status.OK


def test_committed_past_the_end_is_no_lag() -> None:
    assert Sample(0.0, 12, 10).lag == 0


def test_worst_orders_by_severity() -> None:
    assert worst([Status.OK, Status.WARN, Status.STALL, Status.REWIND]) is Status.STALL
    assert worst([Status.WARN, Status.STOP]) is Status.STOP
    assert worst([]) is Status.OK


def test_history_slides_and_forgets_partitions_that_disappear() -> None:
    history = LagHistory(window=3)
    key, other = ("g", "t", 0), ("g", "t", 1)
    for i in range(5):
        history.record({key: Sample(float(i), 5, 9 + i), other: Sample(float(i), 1, 1)})
    assert [s.end for s in history.samples(key)] == [11, 12, 13]
    assert history.status(key, has_members=True) is Status.STALL
    assert history.status(key, has_members=False) is Status.STOP
    history.record({key: Sample(5.0, 13, 14)})
    assert history.samples(other) == []
    assert history.status(key, has_members=True) is Status.OK  # lag shrank from 8 to 1


def test_history_ignores_a_sample_older_than_the_last() -> None:
    history = LagHistory(window=3)
    key = ("g", "t", 0)
    history.record({key: Sample(2.0, 5, 9)})
    history.record({key: Sample(1.0, 1, 9)})
    assert history.samples(key) == [Sample(2.0, 5, 9)]
