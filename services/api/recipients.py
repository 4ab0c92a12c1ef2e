"""An organisation's recipients: its pseudonym key, the ids behind pseudonyms, and erasure (one
id, or a CSV of them).

Erasing needs the sender's id (the phone number it minted with), which goes in the path
percent-encoded (`+` as `%2B`); the bulk form takes a CSV body, one id per line (a first line
`recipient` is a header). Neither is ever logged: the API logs route templates, not paths.
"""

from __future__ import annotations

import base64
import csv
import io
import logging

from aiohttp import web

from services.api.auth import require_org
from services.api.bodies import Pseudonyms
from services.api.body import decode
from services.api.context import GATE, POOL, REDIS, recipient_vault
from services.api.errors import dumps
from shared.erasure import erase_recipients, forget_in_redis
from shared.errors import DependencyError, InvalidInputError, NotFoundError
from shared.minting import check_recipient
from shared.recipients import PSEUDONYM_HEX

log = logging.getLogger(__name__)

MAX_ERASURES = 100_000
"""Recipient ids one bulk erasure may name."""


async def pseudonym_key(request: web.Request) -> web.Response:
    """The organisation's pseudonym key, to compute the pseudonyms the topic and the webhooks
    carry (docs/click-topic.md shows how)."""
    org_id = await require_org(request)
    key = recipient_vault(request, org_id).pseudonym_key
    return web.json_response(
        {
            "org_id": org_id,
            "key": base64.urlsafe_b64encode(key).decode().rstrip("="),
            "algorithm": f"HMAC-SHA256 of the UTF-8 recipient id, first {PSEUDONYM_HEX} hex digits",
        },
        dumps=dumps,
    )


async def look_up(request: web.Request) -> web.Response:
    """The organisation's recipient ids behind pseudonyms (from the topic, a webhook, a report):
    opened from their sealed copies, for the key's organisation only."""
    org_id = await require_org(request)
    pseudonyms = (await decode(request, Pseudonyms)).pseudonyms
    async with request.app[POOL].acquire() as conn:
        found = await recipient_vault(request, org_id).reveal(conn, pseudonyms)
    return web.json_response({"recipients": found}, dumps=dumps)


async def erase_one(request: web.Request) -> web.Response:
    """Erase one recipient, named by the sender's id."""
    org_id = await require_org(request)
    recipient = check_recipient(request.match_info["recipient"])
    assert recipient is not None
    return await _erase(request, org_id, [recipient], missing_is_404=True)


async def erase_many(request: web.Request) -> web.Response:
    """Erase the recipients of a CSV body (any Content-Type, `text/csv` or `text/plain`): one
    sender's id per line, in the first column; a first line `recipient` is a header."""
    org_id = await require_org(request)
    text = (await request.read()).decode("utf-8", "replace")
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if rows and rows[0][0].strip().lower() == "recipient":
        rows = rows[1:]
    if not rows:
        raise InvalidInputError(
            "the body names no recipient: one id per line", code="no_recipients"
        )
    if len(rows) > MAX_ERASURES:
        raise InvalidInputError(
            f"at most {MAX_ERASURES} recipients per request, got {len(rows)}",
            code="too_many_items",
        )
    recipients = [check_recipient(row[0].strip(), i) for i, row in enumerate(rows)]
    with request.app[GATE].enter(org_id):  # a heavy request: at most API_ORG_CONCURRENCY
        return await _erase(request, org_id, [r for r in recipients if r is not None])


async def _erase(
    request: web.Request, org_id: int, recipients: list[str], *, missing_is_404: bool = False
) -> web.Response:
    vault = recipient_vault(request, org_id)
    async with request.app[POOL].acquire() as conn:
        erased = await erase_recipients(conn, vault, recipients, operator=f"api-key:org {org_id}")
    if missing_is_404 and not erased.erased:
        raise NotFoundError("no such recipient (never minted, or erased already)")
    try:
        await forget_in_redis(request.app[REDIS], codes=erased.codes)
    except DependencyError:  # erased in Postgres: the caches only expire later
        log.warning("erased, but the redirectors' caches could not be told")
    log.info("recipients erased", extra={"org_id": org_id, "erased": erased.erased})
    return web.json_response(
        {
            "erased": erased.erased,
            "unknown": len(set(recipients)) - erased.erased,
            "codes": len(erased.codes),
        },
        dumps=dumps,
    )
