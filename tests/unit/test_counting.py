"""The counts have one shape everywhere: the reports' type, the CSV columns and the counter's
columns all come from `events.BOT_KINDS`; `Tally` turns the summed columns into the reports'
counts."""

from __future__ import annotations

import msgspec

from services.api.export import HEADER
from services.api.insights import BOT_COLUMNS, Tally, UniqueCache
from services.api.report_responses import BotsByReason, Counts
from services.counter import store
from shared.events import BOT_KINDS, bot_kind


def test_bots_by_reason_are_the_kinds_and_the_rest() -> None:
    assert [f.name for f in msgspec.structs.fields(BotsByReason)] == [*BOT_KINDS, "other"]
    assert [f.name for f in msgspec.structs.fields(Counts)] == [
        "total", "unique", "bots", "after_expiry", "bots_by_reason"
    ]  # fmt: skip
    assert HEADER[-5:] == (*BOT_COLUMNS, "bots_other")
    for column in BOT_COLUMNS:
        assert f"AS {column}" in store.COUNT_BATCH


def test_a_tally_from_summed_columns_shows_the_rest_of_the_bots_as_other() -> None:
    tally = Tally.of_sums([7, 6, 2, 1, 1, 0, 3], unique=4)
    assert tally.as_dict() == {
        "total": 7,
        "unique": 4,
        "bots": 6,
        "after_expiry": 2,
        "bots_by_reason": {"user_agent": 1, "referrer": 1, "network": 0, "head": 3, "other": 1},
    }
    assert Tally.of_sums([None] * 7).as_dict()["bots_by_reason"]["other"] == 0
    msgspec.convert(tally.as_dict(), Counts)  # the documented type takes it


def test_every_reason_the_redirector_gives_has_its_kind() -> None:
    assert [bot_kind(r) for r in ("head", "ua:WhatsApp", "ua:missing", "referer:x", "cidr:y")] == [
        "head", "user_agent", "user_agent", "referrer", "network"
    ]  # fmt: skip


def test_the_unique_cache_answers_only_for_the_version_it_was_given() -> None:
    cache = UniqueCache(size=2)
    cache.put("a", 10, {"x": 1})
    assert cache.get("a", 10) == {"x": 1}
    assert cache.get("a", 11) is None  # a click counted since: counted again
    cache.put("b", 1, 2)
    cache.get("a", 10)  # a is used again: b is now the oldest
    cache.put("c", 1, 3)
    assert (cache.get("a", 10), cache.get("b", 1), cache.get("c", 1)) == ({"x": 1}, None, 3)
