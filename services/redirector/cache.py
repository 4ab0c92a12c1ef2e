"""An in-process LRU cache whose entries also expire: the redirector's first resolution layer."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlLru(Generic[K, V]):
    """At most `size` entries, each living `ttl_s` seconds; the least recently used goes first.

    Not thread-safe: one event loop owns it. `size` 0 disables the cache (nothing is kept).
    `clock` returns seconds (default `time.monotonic`); tests pass their own.
    """

    __slots__ = ("_clock", "_data", "_size", "_ttl_s")

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None (missing or expired; an expired entry is removed)."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item[1]

    def get_stale(self, key: K) -> tuple[V, bool] | None:
        """(value, still fresh) for `key`, or None if missing; an expired entry is kept.

        For refresh-ahead: the caller serves the old value at once and reloads it in the
        background, instead of making the request wait for the reload.
        """
        item = self._data.get(key)
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[1], item[0] > self._clock()

    def put(self, key: K, value: V) -> None:
        """Store `value` for `ttl_s` seconds, evicting the least recently used entry when full."""
        if self._size <= 0 or self._ttl_s <= 0:
            return
        self._data[key] = (self._clock() + self._ttl_s, value)
        self._data.move_to_end(key)
        if len(self._data) > self._size:
            self._data.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget `key` if present."""
        self._data.pop(key, None)

    def discard_where(self, drop: Callable[[V], bool]) -> None:
        """Forget every entry whose value `drop` selects (a walk over all entries: for rare
        events, such as an organisation's tracking switched)."""
        for key in [k for k, (_, value) in self._data.items() if drop(value)]:
            del self._data[key]

    def clear(self) -> None:
        """Forget everything (e.g. when invalidation messages may have been missed)."""
        self._data.clear()
