"""`clicktrack loadgen`: numbered clicks against a redirector on this machine, every 302 recorded.

Each click carries its number in the User-Agent (after a real phone's UA, so it is not taken for
a bot) and its visitor in the first-party cookie, signed with the redirector's visitor key as the
redirector signs it (an unsigned cookie is ignored), so a validator can later tell exactly which
clicks were counted: total = clicks answered 302, unique = visitors with at least one 302.
The target must be a loopback address; the run is bounded by a click count and a time limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import orjson

from services.redirector.visitors import COOKIE_NAME, VisitorKeys
from shared.errors import InvalidInputError

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Mobile Safari/537.36"
)
UA_MARK = " ct-click/"


class LoadgenError(InvalidInputError, ValueError, code="loadgen_refused"):
    """The load generator was asked for something it refuses (e.g. a non-loopback target)."""


@dataclass(frozen=True)
class Plan:
    """What to send: `clicks` clicks over `codes` at `rate` per second, at most `max_seconds`."""

    base_url: str
    codes: list[str]
    clicks: int
    visitors: int
    rate: float
    max_seconds: float
    visitor_key: bytes
    """The redirector's `VISITOR_HASH_KEY`: the cookies are signed with it."""
    concurrency: int = 32
    seed: int = 1


@dataclass
class Outcome:
    """What came back: the numbers of the clicks answered 302, per code and visitor."""

    answered: dict[int, tuple[str, int]] = field(default_factory=dict)
    """click number -> (code, visitor number), for every 302."""
    failed: dict[int, str] = field(default_factory=dict)
    """click number -> status or error, for everything else."""
    seconds: float = 0.0

    def expected(self) -> dict[str, tuple[int, int]]:
        """code -> (total, unique) that the counter must end with."""
        totals: dict[str, int] = {}
        visitors: dict[str, set[int]] = {}
        for code, visitor in self.answered.values():
            totals[code] = totals.get(code, 0) + 1
            visitors.setdefault(code, set()).add(visitor)
        return {code: (totals[code], len(visitors[code])) for code in totals}


def click_number(user_agent: str | None) -> int | None:
    """The click number a load-generator User-Agent carries, or None."""
    if not user_agent or UA_MARK not in user_agent:
        return None
    tail = user_agent.rsplit(UA_MARK, 1)[1]
    return int(tail) if tail.isdigit() else None


def visitor_cookie(visitor: int, keys: VisitorKeys) -> str:
    """The signed cookie value that identifies load-generator visitor `visitor`."""
    return keys.sign(hashlib.sha256(f"loadgen-visitor-{visitor}".encode()).hexdigest()[:32])


def require_loopback(base_url: str) -> None:
    host = urlsplit(base_url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadgenError(f"loadgen only targets this machine (127.0.0.0/8, ::1), not {host!r}")


async def run(plan: Plan, progress: Callable[[int], None] | None = None) -> Outcome:
    """Send the clicks of `plan`, paced at `plan.rate`, and return what was answered."""
    require_loopback(plan.base_url)
    rng = random.Random(plan.seed)
    outcome = Outcome()
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=plan.concurrency * 2)
    started = time.monotonic()
    deadline = started + plan.max_seconds
    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=plan.concurrency)
    picks = [(rng.choice(plan.codes), rng.randrange(plan.visitors)) for _ in range(plan.clicks)]
    keys = VisitorKeys(plan.visitor_key)

    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as http:

        async def worker() -> None:
            while (n := await queue.get()) is not None:
                code, visitor = picks[n]
                headers = {
                    "User-Agent": f"{PHONE_UA}{UA_MARK}{n}",
                    "Cookie": f"{COOKIE_NAME}={visitor_cookie(visitor, keys)}",
                }
                try:
                    url = f"{plan.base_url}/{code}"
                    async with http.get(url, headers=headers, allow_redirects=False) as resp:
                        if resp.status == 302:
                            outcome.answered[n] = (code, visitor)
                        else:
                            outcome.failed[n] = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome.failed[n] = type(exc).__name__
                if progress:
                    progress(1)

        workers = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
        for n in range(plan.clicks):
            due = started + n / plan.rate
            now = time.monotonic()
            if now >= deadline:
                break
            if due > now:
                await asyncio.sleep(due - now)
            await queue.put(n)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    outcome.seconds = time.monotonic() - started
    return outcome


def write_record(outcome: Outcome, path: Path) -> None:
    """Every answered click as one JSON line: {"n", "code", "visitor"}."""
    with path.open("wb") as out:
        for n in sorted(outcome.answered):
            code, visitor = outcome.answered[n]
            out.write(orjson.dumps({"n": n, "code": code, "visitor": visitor}) + b"\n")
