"""The operations of the API: one `Op` (`services.api.op`) per route under /v1/ (but the OpenAPI
document itself), naming its handler, credential, body types, errors and query parameters. The
API serves exactly these routes (`services.api.app`) and documents exactly these, so a route is
declared once.

The bodies' schemas are generated from their types (`services.api.bodies`, `.responses`,
`.report_responses`); `services.api.openapi` assembles the document.
"""

from __future__ import annotations

from services.api import (
    campaigns,
    chart,
    clickers,
    domains,
    export,
    links,
    orgs,
    recipients,
    render,
    reports,
    resends,
    whitelist,
)
from services.api.bodies import (
    ApiKeyCreate,
    CampaignCreate,
    DomainAdd,
    LinkChange,
    LinkCreate,
    LinkTracking,
    OrgCreate,
    OrgSwitch,
    OrgTimeZone,
    Pseudonyms,
    Recipients,
    RenderBatchRequest,
    RenderRequest,
    ResendCreate,
    WhitelistAdd,
    WhitelistCheck,
    WhitelistImport,
)
from services.api.op import (
    ID,
    RECIPIENT_PAGE,
    TICKET,
    WINDOW,
    Op,
)
from services.api.operator_responses import (
    AuditPage,
    ShortDomain,
    ShortDomainList,
    WhitelistChange,
    WhitelistEntry,
    WhitelistList,
    WhitelistPreflight,
)
from services.api.report_responses import (
    CampaignReport,
    ClickerPage,
    LinkReport,
    NonClickerPage,
    OrgReport,
    ResendCreated,
    ResendMessages,
)
from services.api.responses import (
    ApiKey,
    ApiKeyList,
    Campaign,
    CampaignPage,
    Erasure,
    Link,
    LinkPage,
    Minted,
    NewApiKey,
    Org,
    OrgPage,
    PseudonymKey,
    RecipientIds,
    RenderBatch,
    Rendering,
)

OPERATOR, KEY, EITHER = "operator", "API key", "operator, or an API key of that organisation"
_NO_404 = (401, 403)
_REPORT_ERRORS = (401, 403, 404, 422)
_CAMPAIGN_LINKS = "/v1/campaigns/{campaign_id}/links"
_WHITELIST = "/v1/orgs/{org_id}/dlt-whitelist"
_MINTS = (401, 403, 404, 409)
"""The answers of a route that mints: 409 while the organisation's tracking is off."""
_CSV = (
    "One row per bucket, link and channel with clicks: bucket_start, campaign_id, campaign_kind,"
    " link_id, channel, total_clicks, unique_clicks, bot_clicks, after_expiry, bots_user_agent,"
    " bots_referrer, bots_network, bots_head, bots_other. Freshness in the headers"
    " X-Clicktrack-As-Of, X-Clicktrack-Lag, X-Clicktrack-Lag-Records."
)
_LISTS = (
    ("clickers", "who clicked", clickers.clickers_page, ClickerPage, clickers.clickers_csv,
     "recipient, pseudonym, clicks, bot_clicks, after_expiry, first_click, last_click"),
    ("non-clickers", "who did not click", clickers.non_clickers_page, NonClickerPage,
     clickers.non_clickers_csv, "recipient, pseudonym"),
)  # fmt: skip
"""The recipient lists: path, what, page handler and type, CSV handler, CSV columns."""
_CHART = "Line chart of total, unique and bot clicks"
_SCOPES = (
    ("link", "/v1/links/{link_id}", "A link's", _REPORT_ERRORS),
    ("campaign", "/v1/campaigns/{campaign_id}", "A campaign's", _REPORT_ERRORS),
    ("org", "/v1", "The organisation's", (*_NO_404, 422)),
)
"""The scopes of the CSV reports and charts (one handler each, the scope read from the path):
name, path prefix, whose, error answers."""

OPERATIONS = (
    Op("post", "/v1/orgs", orgs.create_org, "Create an organisation (tracking off)", OPERATOR,
       (201, Org), body=OrgCreate, errors=_NO_404),
    Op("get", "/v1/orgs", orgs.list_orgs, "List organisations", OPERATOR, (200, OrgPage),
       errors=(*_NO_404, 422), paged=True),
    Op("get", "/v1/orgs/{org_id}", orgs.get_org, "Read an organisation", EITHER, (200, Org)),
    Op("put", "/v1/orgs/{org_id}/link-tracking", orgs.set_link_tracking,
       "Switch link tracking on or off", OPERATOR, (200, Org), body=LinkTracking),
    Op("put", "/v1/orgs/{org_id}/time-zone", orgs.set_time_zone,
       "Set the time zone of an organisation's reports", OPERATOR, (200, Org), body=OrgTimeZone),
    Op("post", "/v1/orgs/{org_id}/api-keys", orgs.issue_key, "Issue an API key (shown once)",
       OPERATOR, (201, NewApiKey), body=ApiKeyCreate),
    Op("delete", "/v1/orgs/{org_id}/api-keys/{key_id}", orgs.withdraw_key,
       "Revoke an organisation's key", OPERATOR, (200, ApiKey), errors=(401, 403, 404, 422),
       query=(TICKET,)),
    Op("get", "/v1/orgs/{org_id}/domains", domains.list_domains, "List an organisation's short"
       " domains", EITHER, (200, ShortDomainList)),
    Op("post", "/v1/orgs/{org_id}/domains", domains.add_domain, "Register a short domain",
       OPERATOR, (201, ShortDomain), body=DomainAdd),
    Op("delete", "/v1/orgs/{org_id}/domains/{domain}", domains.remove_domain,
       "Remove a short domain", OPERATOR, (200, ShortDomain), errors=(401, 403, 404, 422),
       query=(TICKET,)),
    Op("put", "/v1/orgs/{org_id}/header-in-path", domains.set_header_in_path,
       "Put the DLT header in the path of short links, or not", OPERATOR, (200, Org),
       body=OrgSwitch),
    Op("put", "/v1/orgs/{org_id}/whitelist-check", domains.set_whitelist_check,
       "Check rendered links against the DLT whitelist, or not", OPERATOR, (200, Org),
       body=OrgSwitch),
    Op("get", _WHITELIST, whitelist.list_whitelist, "An organisation's DLT whitelist", EITHER,
       (200, WhitelistList)),
    Op("post", _WHITELIST, whitelist.add_entry, "Add a DLT whitelist entry", OPERATOR,
       (201, WhitelistChange), body=WhitelistAdd,
       also=(200, "The whitelist had it already", WhitelistChange)),
    Op("post", _WHITELIST + "/import", whitelist.import_csv,
       "Import a DLT whitelist from CSV (all or nothing; dry run)", OPERATOR,
       (200, WhitelistChange), body=WhitelistImport),
    Op("delete", _WHITELIST + "/{entry_id}", whitelist.remove_entry,
       "Remove a DLT whitelist entry", OPERATOR, (200, WhitelistEntry),
       errors=(401, 403, 404, 422), query=(TICKET,)),
    Op("get", "/v1/audit", orgs.list_audit, "The operators' audit trail", OPERATOR,
       (200, AuditPage), errors=(*_NO_404, 422), paged=True,
       query=({"name": "org_id", "in": "query", "schema": ID},)),
    Op("get", "/v1/api-keys", orgs.list_keys, "List the organisation's keys", KEY,
       (200, ApiKeyList), errors=_NO_404),
    Op("post", "/v1/api-keys", orgs.create_key, "Create another key (shown once)", KEY,
       (201, NewApiKey), body=ApiKeyCreate, errors=_NO_404),
    Op("delete", "/v1/api-keys/{key_id}", orgs.revoke_key, "Revoke a key", KEY, (200, ApiKey)),
    Op("post", "/v1/campaigns", campaigns.create_campaign, "Create a campaign", KEY,
       (201, Campaign), body=CampaignCreate, errors=_NO_404),
    Op("get", "/v1/campaigns", campaigns.list_campaigns, "List campaigns", KEY,
       (200, CampaignPage), errors=(*_NO_404, 422), paged=True),
    Op("get", "/v1/campaigns/{campaign_id}", campaigns.get_campaign, "Read a campaign", KEY,
       (200, Campaign)),
    Op("post", _CAMPAIGN_LINKS, links.create_link, "Add a link", KEY, (201, Link),
       body=LinkCreate, errors=_MINTS,
       also=(200, "A resend reuses the link of the campaign it resends", Link)),
    Op("get", _CAMPAIGN_LINKS, links.list_links, "List a campaign's links", KEY, (200, LinkPage),
       errors=(401, 403, 404, 422), paged=True),
    Op("get", "/v1/links/{link_id}", links.get_link, "Read a link", KEY, (200, Link)),
    Op("patch", "/v1/links/{link_id}", links.update_link,
       "Change a link (destination, disabled, expiry)", KEY, (200, Link), body=LinkChange),
    Op("post", "/v1/links/{link_id}/recipients", links.add_recipients,
       "Mint one code per recipient (bulk)", KEY, (200, Minted), body=Recipients,
       errors=_MINTS),
    Op("get", "/v1/recipients/key", recipients.pseudonym_key,
       "The key of the recipients' pseudonyms", KEY, (200, PseudonymKey), errors=_NO_404),
    Op("post", "/v1/recipients/lookup", recipients.look_up,
       "The recipient ids behind pseudonyms", KEY, (200, RecipientIds), body=Pseudonyms,
       errors=_NO_404),
    Op("delete", "/v1/recipients/{recipient}", recipients.erase_one,
       "Erase a recipient, named by its id (percent-encoded)", KEY, (200, Erasure),
       errors=(401, 403, 404, 422)),
    Op("post", "/v1/recipients/erasures", recipients.erase_many,
       "Erase the recipients of a CSV (one id per line)", KEY, (200, Erasure),
       errors=(*_NO_404, 422), upload="One recipient id per line; a first line `recipient` is"
       " a header."),
    Op("post", "/v1/render", render.render_message, "Render a DLT template for a recipient", KEY,
       (200, Rendering), body=RenderRequest, errors=_MINTS),
    Op("post", "/v1/render/batch", render.render_batch,
       "Render a template for up to 10,000 recipients", KEY, (200, RenderBatch),
       body=RenderBatchRequest, errors=_MINTS),
    Op("post", "/v1/render/whitelist-check", whitelist.check_whitelist,
       "What must be whitelisted on DLT to send a template in a campaign", KEY,
       (200, WhitelistPreflight), body=WhitelistCheck),
    Op("post", "/v1/campaigns/{campaign_id}/resends", resends.create_resend,
       "Resend a campaign to its recipients who did not click (or did not open a link), with"
       " the codes they were sent; its first messages", KEY, (201, ResendCreated),
       body=ResendCreate, errors=_MINTS),
    Op("get", "/v1/campaigns/{campaign_id}/messages", resends.resend_messages,
       "A page of a resend's messages (a resend to non-clickers)", KEY, (200, ResendMessages),
       errors=(401, 403, 404, 409, 422), query=RECIPIENT_PAGE),
    Op("get", "/v1/links/{link_id}/report", reports.link_report, "Report of a link", KEY,
       (200, LinkReport), errors=_REPORT_ERRORS, query=WINDOW),
    Op("get", "/v1/campaigns/{campaign_id}/report", reports.campaign_report,
       "Report of a campaign and its family", KEY, (200, CampaignReport), errors=_REPORT_ERRORS,
       query=WINDOW),
    Op("get", "/v1/report", reports.org_report, "Report of the organisation", KEY,
       (200, OrgReport), errors=(*_NO_404, 422), query=WINDOW),
    *(
        Op("get", f"{base}/report.csv", export.report_csv, f"{whose} report as CSV (streamed)",
           KEY, (200, _CSV), errors=errors, query=WINDOW, media="text/csv", name=f"{scope}_csv")
        for scope, base, whose, errors in _SCOPES
    ),
    *(
        Op("get", f"{base}/chart.svg", chart.chart, f"{whose} clicks over time (SVG)", KEY,
           (200, _CHART), errors=errors, query=WINDOW, media="image/svg+xml",
           name=f"{scope}_chart")
        for scope, base, whose, errors in _SCOPES[1:]
    ),
    *(
        Op("get", f"{base}/{path}", page, f"{whose} recipients {what}", KEY, (200, body),
           errors=_REPORT_ERRORS, query=RECIPIENT_PAGE,
           name=f"{scope}_{path.replace('-', '_')}")
        for path, what, page, body, _, _ in _LISTS
        for scope, base, whose, _ in _SCOPES[:2]
    ),
    *(
        Op("get", f"{base}/{path}.csv", csv, f"{whose} recipients {what}, as CSV (streamed)",
           KEY, (200, f"Columns: {columns}."), errors=_REPORT_ERRORS, media="text/csv",
           name=f"{scope}_{path.replace('-', '_')}_csv")
        for path, what, _, _, csv, columns in _LISTS
        for scope, base, whose, _ in _SCOPES[:2]
    ),
)  # fmt: skip
"""Every operation under /v1/ but the document itself."""
