from __future__ import annotations

from services.redirector.cache import TtlLru


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_goes_first_when_full() -> None:
    cache: TtlLru[str, int] = TtlLru(2, 60, Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: TtlLru[str, int] = TtlLru(10, 30, clock)
    cache.put("a", 1)
    clock.now += 29.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0  # the expired entry is removed, not just hidden


def test_a_new_put_restarts_the_ttl() -> None:
    clock = Clock()
    cache: TtlLru[str, int] = TtlLru(10, 30, clock)
    cache.put("a", 1)
    clock.now += 20
    cache.put("a", 2)
    clock.now += 20
    assert cache.get("a") == 2


def test_size_or_ttl_zero_disables_the_cache() -> None:
    for size, ttl in ((0, 30), (10, 0)):
        cache: TtlLru[str, int] = TtlLru(size, ttl, Clock())
        cache.put("a", 1)
        assert (cache.get("a"), len(cache)) == (None, 0)


def test_discard_and_clear() -> None:
    cache: TtlLru[int, str] = TtlLru(10, 30, Clock())
    cache.put(1, "x")
    cache.put(2, "y")
    cache.discard(1)
    cache.discard(99)
    assert (cache.get(1), cache.get(2)) == (None, "y")
    cache.clear()
    assert len(cache) == 0


def test_get_stale_keeps_an_expired_entry_and_says_it_is_stale() -> None:
    clock = Clock()
    cache: TtlLru[str, int] = TtlLru(10, 30, clock)
    assert cache.get_stale("a") is None
    cache.put("a", 1)
    assert cache.get_stale("a") == (1, True)
    clock.now += 30
    assert cache.get_stale("a") == (1, False)
    assert cache.get_stale("a") == (1, False)  # still there: the caller reloads it
    cache.put("a", 2)
    assert cache.get_stale("a") == (2, True)


def test_discard_where_forgets_only_the_selected_values() -> None:
    cache: TtlLru[int, tuple[int, str]] = TtlLru(10, 30, Clock())
    for link_id, org_id in ((1, 7), (2, 8), (3, 7)):
        cache.put(link_id, (org_id, f"https://x.in/{link_id}"))
    cache.discard_where(lambda link: link[0] == 7)  # an organisation's tracking switched
    assert (len(cache), cache.get(2)) == (1, (8, "https://x.in/2"))
