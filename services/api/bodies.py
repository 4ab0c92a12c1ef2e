"""The request bodies of the API, declared once as msgspec Structs.

The handlers decode with these types (`services.api.body.decode`), and the OpenAPI document's
request schemas are generated from them (`msgspec.json.schema_components`), so what is documented
is what is checked. A field's limits are `Meta` constraints; the rules that need the database or
more than a JSON Schema can say (a URL's host, a name's printable characters, an expiry in the
future) stay with the code that stores the value.

An optional field also takes null, meaning "not given", except in `LinkChange`, where null clears
a value and only an absent field means "leave it".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.audit import MAX_TICKET
from shared.campaigns import CHANNEL_PATTERN, HEADER_PATTERN, CampaignKind
from shared.events import Id
from shared.minting import MAX_RECIPIENT
from shared.orgs import MAX_NAME
from shared.urls import MAX_URL_LENGTH

MAX_RECIPIENTS = 100_000
"""Recipients one request may carry; the CLI streams bigger lists in chunks of this size."""
MAX_SLOTS = 100
"""Slot values one message may carry."""
MAX_BATCH = 10_000
"""Messages one batch may carry."""
MAX_CSV = 2_000_000
"""Largest whitelist CSV, characters."""
MAX_TEMPLATE = 10_000
"""Longest template, characters (a DLT template is far shorter)."""


def doc(text: str) -> Meta:
    """The description of a field in the OpenAPI document."""
    return Meta(description=text)


Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
Url = Annotated[str, Meta(max_length=MAX_URL_LENGTH)]
Time = Annotated[datetime, Meta(tz=True)]
"""An RFC 3339 timestamp with a time zone (`2026-12-31T18:30:00Z`)."""
RecipientId = Annotated[str, Meta(min_length=1, max_length=MAX_RECIPIENT)]
Template = Annotated[
    str,
    Meta(
        max_length=MAX_TEMPLATE,
        description="DLT template with slots: typed tags ({#numeric#}, {#alphanumeric#},"
        " {#url#}, {#urlott#}, {#cbn#}, {#email#}) or legacy {#var#}.",
    ),
]
Values = Annotated[list[str], Meta(max_length=MAX_SLOTS)]
SlotTag = Annotated[str, Meta(pattern="^(var|numeric|number|alphanumeric|url|urlott|cbn|email)$")]
SlotTypes = Annotated[
    Annotated[list[SlotTag], Meta(max_length=MAX_SLOTS)] | None,
    doc(
        "The type of each {#var#} slot, as the portal's tagging section gives them (a template"
        " tagged inline needs none)."
    ),
]
Channel = Annotated[str, Meta(pattern=CHANNEL_PATTERN)]
Ticket = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_TICKET,
        description="The support ticket this answers; kept in the audit trail.",
    ),
]
Header = Annotated[str, Meta(pattern=HEADER_PATTERN)]
Domain = Annotated[str, Meta(min_length=3, max_length=253)]
Kind = CampaignKind
"""The kinds live in one place (shared.campaigns): msgspec checks them, the schema lists them."""


def each(item_type: type[msgspec.Struct]) -> Meta:
    """The schema of a raw array item that the handler decodes on its own as `item_type`."""
    return Meta(extra_json_schema={"$ref": f"#/components/schemas/{item_type.__name__}"})


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A JSON object body: unknown fields are refused, so a typo is not silently ignored."""

    rules: ClassVar[Mapping[str, str]] = {}
    """Error code of a field whose value has the right type but breaks the field's rule (too
    long, not one of the values): the code the storing code uses for the same mistake."""


class OrgCreate(Body):
    """A new organisation."""

    rules = {"name": "invalid_name", "ticket": "invalid_ticket"}
    name: Name
    ticket: Ticket | None = None


class LinkTracking(Body):
    """Link tracking of an organisation on or off."""

    rules = {"ticket": "invalid_ticket"}
    enabled: bool
    ticket: Ticket | None = None


class ApiKeyCreate(Body):
    """A new API key."""

    rules = {"name": "invalid_name", "ticket": "invalid_ticket"}
    name: Annotated[Name | None, doc("Default: api key.")] = None
    ticket: Annotated[Ticket | None, doc("Operator only: the support ticket it answers.")] = None


class CampaignCreate(Body):
    """A new campaign."""

    rules = {
        "name": "invalid_name",
        "kind": "invalid_kind",
        "channel": "invalid_channel",
        "dlt_header": "invalid_header",
        "short_domain": "invalid_domain",
    }
    name: Name
    kind: Kind
    channel: Annotated[
        Channel | None, doc("Delivery channel, a reporting dimension; default sms.")
    ] = None
    parent_id: Annotated[
        Id | None, doc("Resends and recurrences only; a campaign of the same organisation.")
    ] = None
    dlt_header: Annotated[
        Header | None,
        doc("The DLT header (sender id) it is sent under; a resend's default is its parent's."),
    ] = None
    short_domain: Annotated[
        Domain | None, doc("One of the organisation's short domains; default: its default.")
    ] = None


class DomainAdd(Body):
    """A short domain for an organisation."""

    rules = {"domain": "invalid_domain", "ticket": "invalid_ticket"}
    domain: Annotated[Domain, doc("A host name, like s.brand.in.")]
    default: Annotated[bool, doc("Make it the organisation's default.")] = False
    move: Annotated[bool, doc("Take it over from the organisation that has it.")] = False
    ticket: Ticket | None = None


class OrgSwitch(Body):
    """One of an organisation's switches on or off (header in path, whitelist check)."""

    rules = {"ticket": "invalid_ticket"}
    enabled: bool
    ticket: Ticket | None = None


class OrgTimeZone(Body):
    """The time zone of an organisation's reports."""

    rules = {"time_zone": "invalid_tz", "ticket": "invalid_ticket"}
    time_zone: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="An IANA name (Asia/Kolkata, Europe/London, UTC): the hours and days of"
            " its reports.",
        ),
    ]
    ticket: Ticket | None = None


class WhitelistAdd(Body):
    """An entry for an organisation's DLT whitelist."""

    rules = {
        "value": "invalid_entry",
        "header": "invalid_header",
        "dlt_ref": "invalid_entry",
        "ticket": "invalid_ticket",
    }
    value: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_URL_LENGTH,
            description="A short domain (s.brand.in), or the start of URLs sent untracked"
            " (https://shop.brand.in/offers/).",
        ),
    ]
    header: Annotated[
        Header | None, doc("A short domain's DLT header; null: every header of the sender.")
    ] = None
    dlt_ref: Annotated[
        Annotated[str, Meta(min_length=1, max_length=100)] | None,
        doc("The DLT portal's reference."),
    ] = None
    whitelisted_on: Annotated[date | None, doc("When it was whitelisted on DLT.")] = None
    ticket: Ticket | None = None


class WhitelistImport(Body):
    """A whitelist as CSV: a header row naming value and any of header, dlt_ref,
    whitelisted_on; a header cell may list several headers (A;B)."""

    rules = {"csv": "invalid_csv", "ticket": "invalid_ticket"}
    csv: Annotated[str, Meta(min_length=1, max_length=MAX_CSV, description="The CSV text.")]
    dry_run: Annotated[bool, doc("Only say what would be added.")] = False
    ticket: Ticket | None = None


class WhitelistCheck(Body):
    """A template and a campaign to check against the organisation's DLT whitelist."""

    rules = {"template": "template_too_long", "slot_types": "unsupported_variable"}
    template: Template
    campaign_id: Annotated[
        Id | None, doc("Required when the organisation's links are tracked.")
    ] = None
    values: Annotated[Values, doc("Sample values: the URLs sent as they are (tracking off).")] = []
    slot_types: SlotTypes = None


class LinkCreate(Body):
    """A new link in a campaign."""

    rules = {"destination": "invalid_destination", "fallback_url": "invalid_fallback"}
    destination: Annotated[Url, doc("Absolute http(s) URL.")]
    expires_at: Annotated[Time | None, doc("RFC 3339 with a time zone, in the future.")] = None
    fallback_url: Annotated[Url | None, doc("Where visitors go after expiry (else 410).")] = None


class LinkChange(Body):
    """The fields to change, at least one; the others keep their values."""

    rules = LinkCreate.rules
    destination: Annotated[Url | UnsetType | None, doc("Null: no change.")] = UNSET
    disabled: Annotated[
        bool | UnsetType | None, doc("true: every code of the link is 404. Null: no change.")
    ] = UNSET
    expires_at: Annotated[
        Time | UnsetType | None, doc("RFC 3339 with a time zone, in the future; null removes it.")
    ] = UNSET
    fallback_url: Annotated[
        Url | UnsetType | None, doc("Where visitors go after expiry (else 410); null removes it.")
    ] = UNSET


class Recipients(Body):
    """Recipients to mint codes for."""

    rules = {"recipients": "invalid_recipient"}
    recipients: Annotated[
        list[RecipientId | None],
        Meta(
            max_length=MAX_RECIPIENTS,
            description="Recipient ids; null stands for the link's shared code.",
        ),
    ]


class RenderRequest(Body):
    """One message to render."""

    rules = {
        "template": "template_too_long",
        "recipient": "invalid_recipient",
        "slot_types": "unsupported_variable",
    }
    template: Template
    values: Values = []
    campaign_id: Annotated[Id | None, doc("Required when values hold links to track.")] = None
    recipient: Annotated[
        RecipientId | None, doc("Whose code the links carry; null: the link's shared code.")
    ] = None
    var_limit: Annotated[Id | None, doc("Characters per slot value; default DLT_VAR_LIMIT.")] = None
    slot_types: SlotTypes = None


class Message(Body):
    """One message of a batch: whose it is and the values of its slots."""

    rules = {"recipient": "invalid_recipient"}
    recipient: Annotated[RecipientId | None, doc("Whose codes the links carry.")] = None
    values: Values = []


class RenderBatchRequest(Body):
    """One template for many messages."""

    rules = {"template": "template_too_long", "slot_types": "unsupported_variable"}
    template: Template
    messages: Annotated[
        list[Annotated[msgspec.Raw, each(Message)]],
        Meta(
            max_length=MAX_BATCH,
            description="Each is decoded on its own: a bad one is refused in its place.",
        ),
    ]
    campaign_id: Annotated[Id | None, doc("Required when values hold links to track.")] = None
    var_limit: Annotated[Id | None, doc("Characters per slot value; default DLT_VAR_LIMIT.")] = None
    slot_types: SlotTypes = None


class Pseudonyms(Body):
    """Pseudonyms to read the recipient ids of (the `recipient_id` of click events)."""

    rules = {"pseudonyms": "invalid_pseudonym"}
    pseudonyms: Annotated[
        list[Annotated[str, Meta(pattern="^[0-9a-f]{32}$")]],
        Meta(max_length=10_000, description="Up to 10,000 pseudonyms, 32 hex digits each."),
    ]


class ResendCreate(Body):
    """A resend of a campaign to its recipients who did not click: the same message (one
    template, one set of values) for each, every link in the values carrying the code the
    recipient was sent the first time."""

    rules = {
        "name": "invalid_name",
        "template": "template_too_long",
        "slot_types": "unsupported_variable",
        "channel": "invalid_channel",
    }
    name: Name
    template: Template
    values: Annotated[
        Values, doc("The slot values; each link must be a live link of the campaign it resends.")
    ] = []
    slot_types: SlotTypes = None
    link_id: Annotated[
        Id | None,
        doc("Send to the recipients of this link of the campaign who did not open it, instead"
            " of the campaign's recipients who clicked none of its links."),
    ] = None  # fmt: skip
    channel: Annotated[Channel | None, doc("Default: the campaign's.")] = None
    var_limit: Annotated[Id | None, doc("Characters per slot value; default DLT_VAR_LIMIT.")] = None
    limit: Annotated[
        int, Meta(ge=0, le=1000, description="Messages rendered in the answer (the rest: GET"
                  " .../messages with `after`).")
    ] = 100  # fmt: skip


REQUEST_BODIES: tuple[type[Body], ...] = (
    OrgCreate,
    LinkTracking,
    ApiKeyCreate,
    CampaignCreate,
    DomainAdd,
    OrgSwitch,
    OrgTimeZone,
    WhitelistAdd,
    WhitelistImport,
    WhitelistCheck,
    LinkCreate,
    LinkChange,
    Recipients,
    RenderRequest,
    Message,
    RenderBatchRequest,
    Pseudonyms,
    ResendCreate,
)
"""Every type a handler decodes a body with."""
