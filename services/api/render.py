"""`POST /v1/render`: a DLT template and its slot values in, the SMS as it will be sent out.

With link tracking on, every link in a value becomes the recipient's short link on the
campaign's link to that destination (created on first use; a resend reuses its parent's). With
tracking off, links stay as they are and the response says so. Limits are checked before anything
is written, so a refused message mints nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api.auth import require_org
from services.api.body import int_field, json_object, text_field
from services.api.context import METRICS, POOL, SETTINGS
from services.api.errors import dumps
from shared import dlt
from shared.campaigns import get_campaign
from shared.errors import InvalidInputError, InvalidLinkError, TemplateError
from shared.links import link_for_destination
from shared.minting import check_recipient, mint
from shared.orgs import get_org
from shared.sms import SmsLength

MAX_SLOTS = 100
_FIELDS = frozenset({"template", "values", "campaign_id", "recipient", "var_limit"})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/render", render_message)


async def render_message(request: web.Request) -> web.Response:
    """Render one message for one recipient (or for everyone, with the link's shared code)."""
    org_id = await require_org(request)
    body = await json_object(request, _FIELDS)
    settings = request.app[SETTINGS]
    pool = request.app[POOL]
    template = dlt.parse_template(str(text_field(body, "template")))
    values = body.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInputError("values must be an array of strings", code="invalid_field")
    if len(values) > MAX_SLOTS:
        raise InvalidInputError(f"at most {MAX_SLOTS} values", code="too_many_items")
    recipient = check_recipient(body.get("recipient"))
    var_limit = int_field(body, "var_limit", required=False) or settings.dlt_var_limit
    org = await get_org(pool, org_id)
    found = dlt.slot_urls(values)
    tracking = org.link_tracking_enabled
    if not (tracking and found):
        done = dlt.render(template, values, None, var_limit=var_limit)
        return _response(done, tracking, var_limit, [])
    short_length = dlt.short_link_length(settings.short_domain, settings.code_length)
    if short_length > var_limit:
        raise TemplateError(
            f"a short link takes {short_length} characters ({settings.short_domain}/ and a"
            f" {settings.code_length}-character code), more than the slot limit of {var_limit}",
            code="short_link_too_long",
            length=short_length,
            limit=var_limit,
        )
    campaign_id = int_field(body, "campaign_id", required=False)
    if campaign_id is None:
        raise InvalidInputError(
            "campaign_id is required to track the links in the values", code="missing_field"
        )
    campaign = await get_campaign(pool, org_id, campaign_id)
    urls = list(dict.fromkeys(link.url for _, link in found))
    # Dry run with placeholders of the real length: refuses too-long values before any write.
    dlt.render(template, values, {u: "x" * short_length for u in urls}, var_limit=var_limit)
    shorts: dict[str, str] = {}
    details: list[dict[str, Any]] = []
    async with pool.acquire() as conn, conn.transaction():
        for url in urls:
            try:
                link = await link_for_destination(conn, campaign, url)
            except InvalidLinkError as exc:
                raise InvalidLinkError(f"{url!r}: {exc}", url=url) from None
            minted = await mint(conn, link.id, [recipient], length=settings.code_length)
            request.app[METRICS].codes_minted.inc(minted.minted)
            (code,) = minted.codes
            shorts[url] = f"{settings.short_domain}/{code}"
            details.append({"url": url, "link_id": link.id, "code": code})
    done = dlt.render(template, values, shorts, var_limit=var_limit)
    return _response(done, tracking, var_limit, details)


def _response(
    done: dlt.Rendering, tracking: bool, var_limit: int, details: list[dict[str, Any]]
) -> web.Response:
    by_url = {d["url"]: d for d in details}
    links = []
    for slot_link in done.links:
        extra = by_url.get(slot_link.target, {"link_id": None, "code": None})
        links.append(
            {
                "slot": slot_link.slot,
                "url": slot_link.url,
                "short_url": slot_link.replacement if tracking else None,
                "link_id": extra["link_id"],
                "code": extra["code"],
            }
        )
    return web.json_response(
        {
            **_measure(done.text, done.sms),
            "original": _measure(done.original_text, done.original),
            "length_change": {
                "characters": done.sms.characters - done.original.characters,
                "units": done.sms.length - done.original.length,
                "segments": done.sms.segments - done.original.segments,
            },
            "tracking": {
                "enabled": tracking,
                "detail": "links replaced by tracked short links"
                if tracking
                else "link tracking is off for this organisation: links left untouched",
            },
            "var_limit": var_limit,
            "values": done.values,
            "links": links,
        },
        dumps=dumps,
    )


def _measure(text: str, sms: SmsLength) -> dict[str, Any]:
    return {
        "text": text,
        "encoding": sms.encoding,
        "characters": sms.characters,
        "length": sms.length,
        "segments": sms.segments,
    }
