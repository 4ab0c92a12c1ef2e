"""Micro-benchmark of the click event's hot paths: the redirector's encode, the counter's decode.

    .venv/bin/python bench/event_codec.py [--against 0824e0a] [--calls 200000]

No services needed: it measures CPU only. Ends with one JSON line, like every benchmark.

Times building and encoding one event as the redirector does (positionally, then
`events.encode`) and decoding it as the counter does (`events.decode`), in ns per call. With
`--against REV` it loads `shared/events.py` as it was at that revision (before the one
`ClickEvent`: `encode_click` and `read_record`) and times it on the same event in the same
process, interleaved round by round, and reports new/old ratios. Each figure is the best round:
on a shared machine the other rounds measure the neighbours.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import timeit
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.outcome import finish  # noqa: E402
from shared import events  # noqa: E402

EVENT: tuple[Any, ...] = (
    "0192f0c1-7d3e-7abc-8def-0123456789ab",  # event_id
    "2026-11-26T19:25:28.123Z",  # occurred_at
    "AbC123xYz9",  # code
    7,  # link_id
    3,  # org_id
    "sms",  # channel
    "v:0123456789abcdef0123456789abcdef",  # visitor_id
    11,  # campaign_id
    "resend",  # campaign_kind
    None,  # recipient_id
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 Chrome/120.0 Mobile",
    "203.0.113.0",  # ip
    None,  # referer
    None,  # bot_reason
    "redirect",  # outcome
)


def new_cases() -> dict[str, Callable[[], object]]:
    ei, oa, co, li, oi, ch, vi, ci, ck, ri, ua, ip, rf, br, oc = EVENT
    encode, decode, event = events.encode, events.decode, events.ClickEvent
    raw = encode(event(ei, oa, co, li, oi, ch, vi, br is not None, ci, ck, ri, ua, ip, rf, br, oc))
    return {
        "encode": lambda: encode(
            event(ei, oa, co, li, oi, ch, vi, br is not None, ci, ck, ri, ua, ip, rf, br, oc)
        ),
        "decode": lambda: decode(raw),
    }


def old_cases(rev: str) -> dict[str, Callable[[], object]]:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:shared/events.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    old = sys.modules["old_events"] = types.ModuleType("old_events")
    exec(compile(source, f"{rev}:shared/events.py", "exec"), old.__dict__)
    ei, oa, co, li, oi, ch, vi, ci, ck, ri, ua, ip, rf, br, oc = EVENT
    encode_click, read_record = old.encode_click, old.read_record
    raw = encode_click(ei, oa, co, li, oi, ci, ck, ch, ri, vi, ua, ip, rf, br, oc)
    return {
        "encode": lambda: encode_click(ei, oa, co, li, oi, ci, ck, ch, ri, vi, ua, ip, rf, br, oc),
        "decode": lambda: read_record(raw),
    }


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also time shared/events.py at REV")
    parser.add_argument("--calls", type=int, default=200_000, help="calls per case (200,000)")
    parser.add_argument("--rounds", type=int, default=40, help="rounds they are split in (40)")
    args = parser.parse_args()
    cases = {f"new {k}": f for k, f in new_cases().items()}
    if args.against:
        cases |= {f"old {k}": f for k, f in old_cases(args.against).items()}
    per_round = args.calls // args.rounds
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, case in cases.items():
            ns = timeit.timeit(case, number=per_round) / per_round * 1e9
            best[name] = min(best[name], ns)
    result: dict[str, Any] = {"calls": args.calls, "rounds": args.rounds}
    for op in ("encode", "decode"):
        result[f"{op}_ns"] = round(best[f"new {op}"])
        if args.against:
            result[f"{op}_ns_at_{args.against}"] = round(best[f"old {op}"])
            result[f"ratio_{op}_new_vs_old"] = round(best[f"new {op}"] / best[f"old {op}"], 3)
    return result


if __name__ == "__main__":
    sys.exit(finish("event_codec", main))
