"""Organisations' DLT whitelists: listed (operator, or the organisation's key), changed and
imported from CSV (operator, audited), and the pre-flight check a sender runs before a send:
`POST /v1/render/whitelist-check` lists what must be whitelisted on DLT for a template and a
campaign, and whether it is."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from services.api import dlt
from services.api.auth import require_operator, require_org
from services.api.bodies import WhitelistAdd, WhitelistCheck, WhitelistImport
from services.api.body import decode, path_id
from services.api.context import POOL, SETTINGS
from services.api.errors import dumps
from services.api.orgs import as_operator, org_list, query_ticket
from shared import orgs, whitelist
from shared.campaigns import get_campaign
from shared.domains import short_prefix

list_whitelist = org_list("list_whitelist", whitelist.list_entries, "DLT whitelist")


async def add_entry(request: web.Request) -> web.Response:
    """Operator: add one entry (201; 200 when the whitelist has it already)."""
    await require_operator(request)
    body = await decode(request, WhitelistAdd)
    entry = whitelist.new_entry(body.value, body.header, body.dlt_ref, body.whitelisted_on)
    return await _store(request, [entry], dry_run=False, ticket=body.ticket, created=201)


async def import_csv(request: web.Request) -> web.Response:
    """Operator: add every entry of a CSV the organisation lacks, all or nothing (or, with
    `dry_run`, only say what would be added)."""
    await require_operator(request)
    body = await decode(request, WhitelistImport)
    entries = whitelist.parse_csv(body.csv)
    return await _store(request, entries, dry_run=body.dry_run, ticket=body.ticket, created=200)


async def _store(
    request: web.Request,
    entries: list[whitelist.NewEntry],
    *,
    dry_run: bool,
    ticket: str | None,
    created: int,
) -> web.Response:
    added, kept = await as_operator(
        request, whitelist.import_entries, entries, dry_run=dry_run, ticket=ticket
    )
    body = {"dry_run": dry_run, "added": added, "kept": kept}
    return web.json_response(body, status=created if added else 200, dumps=dumps)


async def remove_entry(request: web.Request) -> web.Response:
    """Operator: remove one entry."""
    await require_operator(request)
    entry_id = path_id(request, "entry_id")
    removed = await as_operator(
        request, whitelist.remove_entry, entry_id, ticket=query_ticket(request)
    )
    return web.json_response(removed, dumps=dumps)


async def check_whitelist(request: web.Request) -> web.Response:
    """An API key: what the organisation must have whitelisted on DLT to send this template in
    this campaign (with tracking on: the campaign's short domain and header; off: each URL of
    the sample values), and whether it has."""
    org_id = await require_org(request)
    body = await decode(request, WhitelistCheck)
    pool, settings = request.app[POOL], request.app[SETTINGS]
    template = dlt.parse_template(body.template, body.slot_types)
    org = await orgs.get_org(pool, org_id)
    listed = whitelist.Whitelist(await whitelist.list_entries(pool, org_id), enforced=True)
    needed: list[whitelist.Needed] = []
    if org.link_tracking_enabled:
        campaign = None
        if body.campaign_id is not None:
            campaign = await get_campaign(pool, org_id, body.campaign_id)
        if template.link_slots:
            prefix = await short_prefix(pool, org, campaign, settings.links.short_domain)
            header = campaign.dlt_header if campaign is not None else None
            needed.append(listed.short_link(prefix.domain, header))
    else:
        for _, link in dlt.slot_urls(body.values):
            found = listed.plain_url(link.text)
            if found not in needed:
                needed.append(found)
    answer: dict[str, Any] = {
        "tracking": org.link_tracking_enabled,
        "enforced": org.dlt_whitelist_check,
        "ready": all(n.whitelisted for n in needed),
        "needed": [asdict(n) for n in needed],
    }
    return web.json_response(answer, dumps=dumps)
