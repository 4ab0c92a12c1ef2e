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
from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from shared.campaigns import CHANNEL_PATTERN, CampaignKind
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
    str, Meta(max_length=MAX_TEMPLATE, description="DLT template with {#var#} slots.")
]
Values = Annotated[list[str], Meta(max_length=MAX_SLOTS)]
Channel = Annotated[str, Meta(pattern=CHANNEL_PATTERN)]
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

    rules = {"name": "invalid_name"}
    name: Name


class LinkTracking(Body):
    """Link tracking of an organisation on or off."""

    enabled: bool


class ApiKeyCreate(Body):
    """A new API key."""

    rules = {"name": "invalid_name"}
    name: Annotated[Name | None, doc("Default: api key.")] = None


class CampaignCreate(Body):
    """A new campaign."""

    rules = {"name": "invalid_name", "kind": "invalid_kind", "channel": "invalid_channel"}
    name: Name
    kind: Kind
    channel: Annotated[
        Channel | None, doc("Delivery channel, a reporting dimension; default sms.")
    ] = None
    parent_id: Annotated[
        Id | None, doc("Resends and recurrences only; a campaign of the same organisation.")
    ] = None


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

    rules = {"template": "template_too_long", "recipient": "invalid_recipient"}
    template: Template
    values: Values = []
    campaign_id: Annotated[Id | None, doc("Required when values hold links to track.")] = None
    recipient: Annotated[
        RecipientId | None, doc("Whose code the links carry; null: the link's shared code.")
    ] = None
    var_limit: Annotated[Id | None, doc("Characters per slot value; default DLT_VAR_LIMIT.")] = None


class Message(Body):
    """One message of a batch: whose it is and the values of its slots."""

    rules = {"recipient": "invalid_recipient"}
    recipient: Annotated[RecipientId | None, doc("Whose codes the links carry.")] = None
    values: Values = []


class RenderBatchRequest(Body):
    """One template for many messages."""

    rules = {"template": "template_too_long"}
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


REQUEST_BODIES: tuple[type[Body], ...] = (
    OrgCreate,
    LinkTracking,
    ApiKeyCreate,
    CampaignCreate,
    LinkCreate,
    LinkChange,
    Recipients,
    RenderRequest,
    Message,
    RenderBatchRequest,
)
"""Every type a handler decodes a body with."""
