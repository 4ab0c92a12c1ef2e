"""Burrow-style consumer status, judged over a sliding window of offset samples.

Pure logic, no I/O: the lag reader feeds `LagHistory` one sample per partition per poll, and the
rules below turn a partition's window into a status. They follow Burrow's evaluation rules
(github.com/linkedin/Burrow/wiki/Consumer-Lag-Evaluation-Rules), adapted to sampling: Burrow
sees every offset commit, we see the committed offset each time we poll, plus whether the group
still has live members.

For one partition with samples s[0..n-1] (oldest first), lag = log-end offset - committed offset:

1. lag now is 0                                           -> OK
2. lag > 0, the group has no live member and the committed
   offset did not move in the window (commits stopped)     -> STOP
3. lag was 0 at some sample of the window (it caught up)  -> OK
4. the committed offset went back between two samples      -> REWIND
5. window full, committed offset never moved               -> STALL  (alive but not progressing)
6. window full, offset moved but lag never decreased       -> WARN   (falling behind)
7. otherwise                                               -> OK

A group's status is its worst partition's. A single sample (a one-shot look) can only say OK or
STOP; STALL and WARN need a full window, as in Burrow, so a brief hiccup does not page anyone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise


class Status(StrEnum):
    """A partition's or group's health, in rising order of severity."""

    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"

    @property
    def severity(self) -> int:
        """0 for OK up to 4 for STOP."""
        return list(Status).index(self)


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at a partition: when, where the group was, and where the log ended."""

    at: float
    """When the sample was taken, seconds (any clock, the same for the whole window)."""
    committed: int
    """The group's committed offset: the next record it will read."""
    end: int
    """The partition's log-end offset (high watermark)."""

    @property
    def lag(self) -> int:
        """Records written but not yet consumed; never negative."""
        return max(0, self.end - self.committed)


def evaluate(samples: Sequence[Sample], *, has_members: bool, window: int) -> Status:
    """The status of one partition from its samples (oldest first).

    `has_members` says whether the group has live members now; `window` is the number of samples
    a full window holds (STALL and WARN are only called on a full window).
    """
    if not samples or samples[-1].lag == 0:
        return Status.OK
    offsets = [s.committed for s in samples]
    moved = len(set(offsets)) > 1
    if not has_members and not moved:
        return Status.STOP
    if any(s.lag == 0 for s in samples):
        return Status.OK
    if any(later < earlier for earlier, later in pairwise(offsets)):
        return Status.REWIND
    if len(samples) < window:
        return Status.OK
    if not moved:
        return Status.STALL
    lags = [s.lag for s in samples]
    if all(later >= earlier for earlier, later in pairwise(lags)):
        return Status.WARN
    return Status.OK


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of `statuses`; OK when there are none."""
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


PartitionKey = tuple[str, str, int]
"""(group, topic, partition)."""


class LagHistory:
    """The last `window` samples of every (group, topic, partition) seen.

    `record` adds one poll's samples; a partition absent from a poll (its group was deleted, or
    stopped committing to it) is forgotten, so the history never outgrows the cluster.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError("window must hold at least one sample")
        self.window = window
        self._samples: dict[PartitionKey, deque[Sample]] = {}

    def record(self, polled: dict[PartitionKey, Sample]) -> None:
        """Add one poll: a sample per partition, all taken at about the same time."""
        for key in self._samples.keys() - polled.keys():
            del self._samples[key]
        for key, sample in polled.items():
            history = self._samples.setdefault(key, deque(maxlen=self.window))
            if history and sample.at <= history[-1].at:
                continue  # a sample out of order tells nothing new
            history.append(sample)

    def samples(self, key: PartitionKey) -> list[Sample]:
        """The window of one partition, oldest first (empty if never seen)."""
        return list(self._samples.get(key, ()))

    def status(self, key: PartitionKey, *, has_members: bool) -> Status:
        """`evaluate` on the window of one partition."""
        return evaluate(self.samples(key), has_members=has_members, window=self.window)
