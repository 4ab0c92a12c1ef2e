"""`events.read` takes a quick path for well-formed events: it must accept and refuse exactly
what the field-by-field check does, with the same reasons."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shared import events
from shared.errors import EventError
from tests.unit.test_events import make_event

FIELDS = sorted(orjson.loads(events.encode(make_event())))
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from(
        [
            "0192f0c1-7d3e-7abc-8def-0123456789ab",
            "0192F0C1-7D3E-7ABC-8DEF-0123456789AB",
            "{0192f0c1-7d3e-7abc-8def-0123456789ab}",
            "0192f0c17d3e7abc8def0123456789ab",
            "",
        ]
    ),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=2),
)


def verdict(check: Callable[[], object]) -> str | None:
    """None when `check` passes, else the reason of its EventError."""
    try:
        check()
    except EventError as exc:
        return str(exc)
    return None


@given(
    st.dictionaries(st.sampled_from([*FIELDS, "added_later"]), values, max_size=4),
    st.lists(st.sampled_from(FIELDS), max_size=2),
)
@example({"visitor_id": ""}, [])
@example({"is_bot": 1}, [])
@example({"link_id": True}, [])
@example({"campaign_id": 1.0}, [])
@example({"referer": 7}, [])
@example({"event_id": "0192F0C1-7D3E-7ABC-8DEF-0123456789AB"}, [])
@example({}, ["occurred_at"])
@example({"added_later": [1]}, ["campaign_id", "bot_reason"])
def test_the_quick_path_agrees_with_the_full_check(
    changes: dict[str, object], removed: list[str]
) -> None:
    event: dict[str, object] = orjson.loads(events.encode(make_event()))
    for name in removed:
        event.pop(name, None)
    event.update(changes)
    raw = orjson.dumps(event)
    assert verdict(lambda: events.read(raw)) == verdict(lambda: events._check(orjson.loads(raw)))


@pytest.mark.parametrize(
    "event_id",
    ["0192F0C1-7D3E-7ABC-8DEF-0123456789AB", "{0192f0c1-7d3e-7abc-8def-0123456789ab}"],
)
def test_an_event_id_in_another_spelling_takes_the_full_check_and_passes(event_id: str) -> None:
    assert events.decode(events.encode(make_event(event_id=event_id))).event_id == event_id
