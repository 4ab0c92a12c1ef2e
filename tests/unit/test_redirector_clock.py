from __future__ import annotations

from datetime import UTC, datetime

from services.redirector.handler import IsoClock


def test_the_fast_clock_writes_what_utc_now_iso_writes() -> None:
    clock = IsoClock()
    for at in (0.0, 1_780_000_000.0, 1_780_000_000.999, 1_780_000_001.0005, 1_780_000_001.5):
        expected = (
            datetime.fromtimestamp(at, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        assert clock.now(at) == expected
