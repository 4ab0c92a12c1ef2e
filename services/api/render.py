"""Rendering DLT templates into the SMS that will be sent: one message, or a batch.

`POST /v1/render` renders one message; `POST /v1/render/batch` renders up to 10,000 messages of
one template (one per recipient, each with its own values) and mints their codes in bulk.

With link tracking on, every link in a value becomes the recipient's short link on the
campaign's link to that destination (created on first use; a resend reuses its parent's). With
tracking off, links stay as they are and the response says so. Every message is checked against
the DLT rules before anything is written, so a refused message mints nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.api import bodies, dlt
from services.api.auth import require_org
from services.api.bodies import RenderBatchRequest, RenderRequest
from services.api.body import decode, decode_item
from services.api.context import GATE, METRICS, POOL, SETTINGS, recipient_vault
from services.api.errors import dumps
from services.api.links import cache_minted
from services.api.sms import SmsLength
from shared.campaigns import get_campaign
from shared.domains import ShortPrefix, short_prefix
from shared.errors import ClicktrackError, InvalidInputError, NotFoundError, TemplateError
from shared.link_cache import CodeRow
from shared.links import link_for_destination
from shared.minting import Recipient, check_recipient, mint
from shared.orgs import get_org, require_tracking
from shared.urls import normalise_destination
from shared.whitelist import Whitelist, list_entries

_ON = "links replaced by tracked short links"
_OFF = "link tracking is off for this organisation: links left untouched"

YIELD_EVERY = 200
"""Messages of a batch checked or rendered between two yields to the event loop: rendering
10,000 is about a second of Python, which would otherwise stall every other request."""

Tracked = dict[tuple[str, Recipient], tuple[int, str]]
"""(link as a phone opens it, recipient) -> (link id, code)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message to render: whose it is and the values of its slots."""

    recipient: Recipient
    values: list[str]


@dataclass(frozen=True, slots=True)
class Job:
    """What every message of a request shares."""

    org_id: int
    template: dlt.Template
    var_limit: int
    tag_limits: dict[str, int] | None
    """Limits of the typed slots; None when the request's `var_limit` applies to every slot."""
    tracking: bool
    campaign_id: int | None
    prefix: ShortPrefix | ClicktrackError
    """What the short links start with (the campaign's or organisation's domain, and the DLT
    header when the organisation asks for it), or why there can be none: raised only when a
    message has links to shorten."""
    code_length: int
    whitelist: Whitelist
    """The organisation's DLT whitelist, which every link must be on (when it is enforced)."""
    header: str | None
    """The DLT header the campaign is sent under (whether or not it is in the links' path)."""
    missing_campaign: NotFoundError | None
    """The request's `campaign_id` names no campaign of the organisation."""

    @property
    def limits(self) -> dict[str, Any]:
        """The keyword arguments of `dlt.render` that limit the slots."""
        return {"var_limit": self.var_limit, "tag_limits": self.tag_limits}

    @property
    def short_length(self) -> int:
        """Characters of a short link: `domain/code` or `domain/HEADER/code`."""
        return self.short_prefix.length(self.code_length)

    @property
    def short_prefix(self) -> ShortPrefix:
        if isinstance(self.prefix, ClicktrackError):
            raise self.prefix
        return self.prefix


async def render_message(request: web.Request) -> web.Response:
    """Render one message for one recipient (or for everyone, with the link's shared code)."""
    org_id = await require_org(request)
    body = await decode(request, RenderRequest)
    job = await job_of(request, org_id, body)
    message = Message(check_recipient(body.recipient), body.values)
    check_message(job, message)
    tracked = await _track(request, job, [message])
    done = render_one(job, message, tracked)
    links = []
    for link in done.links:
        link_id, code = tracked.get((link.target, message.recipient), (None, None))
        short = link.replacement if job.tracking else None
        links.append(
            {
                "slot": link.slot,
                "url": link.url,
                "short_url": short,
                "link_id": link_id,
                "code": code,
            }
        )
    return web.json_response(
        {
            **measured(done),
            "tracking": {"enabled": job.tracking, "detail": _ON if job.tracking else _OFF},
            "var_limit": job.var_limit,
            **_typing(job.template),
            "values": done.values,
            "links": links,
        },
        dumps=dumps,
    )


async def render_batch(request: web.Request) -> web.Response:
    """Render one template for many recipients; a message that breaks a rule gets its error in
    its place and mints nothing, the others are rendered. An organisation renders at most
    `API_ORG_CONCURRENCY` batches (and exports) at once."""
    org_id = await require_org(request)
    with request.app[GATE].enter(org_id):
        body = await decode(request, RenderBatchRequest)
        job = await job_of(request, org_id, body)
        items = body.messages
        results: list[dict[str, Any]] = [{} for _ in items]
        good: list[tuple[int, Message]] = []
        for i, item in enumerate(items):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let other requests run: a batch is long Python work
            try:
                given = decode_item(item, bodies.Message, "a message")
                message = Message(check_recipient(given.recipient), given.values)
                check_message(job, message)
            except InvalidInputError as exc:
                results[i] = {"error": exc.code, "detail": exc.detail, **exc.context}
            else:
                good.append((i, message))
        tracked = await _track(request, job, [m for _, m in good])
        segments = original = 0
        for n, (i, message) in enumerate(good):
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            done = render_one(job, message, tracked)
            results[i] = {"recipient": message.recipient, **measured(done)}
            segments, original = segments + done.sms.segments, original + done.original.segments
        return web.json_response(
            {
                "tracking": {"enabled": job.tracking, "detail": _ON if job.tracking else _OFF},
                "var_limit": job.var_limit,
                **_typing(job.template),
                "totals": {
                    "messages": len(items),
                    "rendered": len(good),
                    "refused": len(items) - len(good),
                    "segments": segments,
                    "original_segments": original,
                },
                "messages": results,
            },
            dumps=dumps,
        )


async def job_of(
    request: web.Request, org_id: int, body: RenderRequest | RenderBatchRequest
) -> Job:
    settings, pool = request.app[SETTINGS], request.app[POOL]
    limit = settings.api.dlt_var_limit
    if body.var_limit is not None and body.var_limit > limit:
        # The operators' slot limit is not the caller's to raise: a message checked against a
        # larger one would be blocked at sending, after its codes were minted.
        raise InvalidInputError(
            f"var_limit may only lower the slot limit of {limit} characters (DLT_VAR_LIMIT)",
            code="invalid_var_limit",
            limit=limit,
        )
    template = dlt.parse_template(body.template, body.slot_types)
    org = await get_org(pool, org_id)
    campaign, missing = None, None
    if body.campaign_id is not None:
        try:
            campaign = await get_campaign(pool, org_id, body.campaign_id)
        except NotFoundError as exc:  # answered only if a message has links to track
            missing = exc
    prefix: ShortPrefix | ClicktrackError
    try:
        prefix = await short_prefix(pool, org, campaign, settings.links.short_domain)
    except InvalidInputError as exc:  # raised if a message has links to shorten
        prefix = exc
    entries = await list_entries(pool, org_id) if org.dlt_whitelist_check else []
    return Job(
        org_id=org_id,
        template=template,
        var_limit=body.var_limit or limit,
        tag_limits=None
        if body.var_limit
        else dlt.tag_limits(settings.api.dlt_tag_limits, settings.api.dlt_var_limit),
        tracking=org.link_tracking_enabled,
        campaign_id=body.campaign_id,
        prefix=prefix,
        code_length=settings.links.code_length,
        whitelist=Whitelist(entries, enforced=org.dlt_whitelist_check),
        header=campaign.dlt_header if campaign is not None else None,
        missing_campaign=missing,
    )


def check_message(job: Job, message: Message) -> None:
    """Refuse a message that cannot be sent, before anything is written: wrong value count,
    a value over the limit once its links are short links of the real length, a bad link."""
    dlt.check_slots(job.template, message.values)  # a link outside a URL slot, a bad value
    found = dlt.slot_urls(message.values)
    if not (job.tracking and found):
        dlt.render(job.template, message.values, None, **job.limits)
        for slot, link in found:  # sent as they are: each must be whitelisted as a URL
            job.whitelist.require(job.whitelist.plain_url(link.text), slot)
        return
    if job.short_length > job.var_limit:
        raise TemplateError(
            f"a short link takes {job.short_length} characters ({job.short_prefix.url('')} and"
            f" a code), more than the slot limit of {job.var_limit}",
            code="short_link_too_long",
            length=job.short_length,
            limit=job.var_limit,
        )
    if job.missing_campaign is not None:
        raise job.missing_campaign
    for slot, link in found:
        try:
            normalise_destination(link.url)
        except InvalidInputError as exc:
            raise type(exc)(f"slot {slot}, {link.text!r}: {exc}", slot=slot) from None
    domain = job.short_prefix.domain
    job.whitelist.require(job.whitelist.short_link(domain, job.header), found[0][0])
    placeholder = "x" * job.short_length
    dlt.render(
        job.template,
        message.values,
        {link.url: placeholder for _, link in found},
        **job.limits,
    )


async def _track(request: web.Request, job: Job, messages: list[Message]) -> Tracked:
    """The short code of every (link, recipient) in the messages, minted in bulk per link."""
    wanted: dict[str, list[Recipient]] = {}
    if job.tracking:
        for message in messages:
            for _, found in dlt.slot_urls(message.values):
                wanted.setdefault(found.url, []).append(message.recipient)
    if not wanted:
        return {}
    if job.campaign_id is None:
        raise InvalidInputError(
            "campaign_id is required to track the links in the values", code="missing_field"
        )
    settings, pool = request.app[SETTINGS], request.app[POOL]
    campaign = await get_campaign(pool, job.org_id, job.campaign_id)
    tracked: Tracked = {}
    rows: list[CodeRow] = []
    vault = recipient_vault(request, job.org_id)
    async with pool.acquire() as conn, conn.transaction():
        await require_tracking(conn, job.org_id)  # switched off since `_job` read it: 409
        for url, recipients in wanted.items():
            link = await link_for_destination(conn, campaign, url)
            minted = await mint(
                conn, link.id, recipients, length=settings.links.code_length, vault=vault
            )
            request.app[METRICS].codes_minted.inc(minted.minted)
            for recipient, code in zip(minted.recipients, minted.codes, strict=True):
                tracked[(url, recipient)] = (link.id, code)
            rows.extend(minted.code_rows(link.id))
    await cache_minted(request.app, rows)
    return tracked


def render_one(job: Job, message: Message, tracked: Tracked) -> dlt.Rendering:
    shorts = None
    if job.tracking:
        prefix = job.short_prefix
        shorts = {
            link.url: prefix.url(tracked[(link.url, message.recipient)][1])
            for _, link in dlt.slot_urls(message.values)
        }
    return dlt.render(job.template, message.values, shorts, **job.limits)


def _typing(template: dlt.Template) -> dict[str, Any]:
    return {
        "slot_types": [template.kind(i) for i in range(template.slots)],
        "warnings": list(template.warnings),
    }


def measured(done: dlt.Rendering) -> dict[str, Any]:
    return {
        **_measure(done.text, done.sms),
        "original": _measure(done.original_text, done.original),
        "length_change": {
            "characters": done.sms.characters - done.original.characters,
            "units": done.sms.length - done.original.length,
            "segments": done.sms.segments - done.original.segments,
        },
    }


def _measure(text: str, sms: SmsLength) -> dict[str, Any]:
    return {
        "text": text,
        "encoding": sms.encoding,
        "characters": sms.characters,
        "length": sms.length,
        "segments": sms.segments,
    }
