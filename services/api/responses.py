"""The response bodies of the links API, declared as msgspec Structs.

The OpenAPI document's response schemas are generated from these types; the tests check every
answer they receive against them (tests/integration/api_client.py and schemathesis). The reports'
bodies are in `services.api.report_responses`.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta

from services.api.bodies import Kind, Time, doc
from shared.events import Id


class Closed(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A response object that carries exactly the fields declared."""


class Error(msgspec.Struct, kw_only=True):
    """Every failure; some add context, such as a template's `position`."""

    error: Annotated[str, doc("Stable machine-readable code.")]
    detail: Annotated[str, doc("What went wrong, for people.")]


T = TypeVar("T")


class IdPage(msgspec.Struct, Generic[T]):
    """A keyset page of records by id (`?after=&limit=`); a subclass names its items."""

    items: list[T]
    next_after: Annotated[Id | None, doc("Pass as `after` for the next page; null at end.")]


class RecipientPage(msgspec.Struct, Generic[T]):
    """A keyset page in the order of recipients (`?after=<pseudonym>&limit=`); a subclass names
    its items."""

    items: list[T]
    next_after: Annotated[str | None, doc("Pass as `after` for the next page; null at the end.")]


class Org(Closed):
    """An organisation."""

    id: Id
    name: str
    link_tracking_enabled: bool
    created_at: Time
    tracking_changed_at: Time | None
    header_in_path: Annotated[bool, doc("Short links carry the campaign's DLT header.")]
    dlt_whitelist_check: Annotated[
        bool, doc("Rendering refuses links missing from the organisation's DLT whitelist.")
    ]
    time_zone: Annotated[
        str, doc("IANA time zone its reports count hours and days in (set by an operator).")
    ]


class OrgPage(IdPage[Org]):
    """A page of organisations."""


class ApiKey(Closed):
    """An API key's record (never the key itself)."""

    id: Id
    org_id: Id
    name: str
    prefix: Annotated[str, doc("First characters of the key.")]
    created_at: Time
    revoked_at: Time | None


class NewApiKey(ApiKey):
    """A new API key's record and the key."""

    key: Annotated[str, doc("The key itself: shown this once only.")]


class ApiKeyList(msgspec.Struct):
    """The organisation's keys."""

    items: list[ApiKey]


class Campaign(Closed):
    """A campaign."""

    id: Id
    org_id: Id
    name: str
    kind: Kind
    channel: str
    parent_id: Id | None
    created_at: Time
    dlt_header: Annotated[str | None, doc("The DLT header (sender id) it is sent under.")]
    short_domain: Annotated[str | None, doc("Its short domain; null: the organisation's default.")]


class CampaignPage(IdPage[Campaign]):
    """A page of campaigns."""


class Link(Closed):
    """A tracked link."""

    id: Id
    org_id: Id
    campaign_id: Id | None
    destination: Annotated[str, doc("Normalised http(s) URL.")]
    disabled: bool
    expires_at: Time | None
    fallback_url: str | None
    created_at: Time


class LinkPage(IdPage[Link]):
    """A page of links."""


class MintedCode(Closed):
    """A recipient's code."""

    recipient: str | None
    code: str
    short_url: str


class Minted(Closed):
    """Codes minted for the recipients of a link."""

    link_id: Id
    minted: Annotated[int, doc("Codes created by this request.")]
    reused: Annotated[int, doc("Recipients that already had a code.")]
    codes: list[MintedCode]


class SmsMeasure(Closed):
    """A text and its size as an SMS."""

    text: str
    encoding: Literal["GSM-7", "UCS-2"]
    characters: Annotated[int, doc("Unicode code points.")]
    length: Annotated[int, doc("Septets (GSM-7) or UTF-16 code units (UCS-2).")]
    segments: Annotated[int, doc("SMS parts: 160/153 GSM-7, 70/67 UCS-2.")]


class LengthChange(Closed):
    """What shortening the links changed."""

    characters: int
    units: Annotated[int, doc("Each text counted in its own encoding's units.")]
    segments: int


class Tracking(Closed):
    """Whether links were replaced by tracked short links."""

    enabled: bool
    detail: str


class RenderedMessage(SmsMeasure):
    """A rendered message of a batch."""

    recipient: str | None
    original: SmsMeasure
    length_change: LengthChange


class BatchTotals(Closed):
    """Counts over a batch."""

    messages: int
    rendered: int
    refused: Annotated[int, doc("Messages answered with an error.")]
    segments: Annotated[int, doc("SMS parts of all rendered messages.")]
    original_segments: int


_RENDERED = {"$ref": "#/components/schemas/RenderedMessage"}
_ERROR = {"$ref": "#/components/schemas/Error"}


class RenderBatch(Closed):
    """A rendered batch."""

    tracking: Tracking
    var_limit: int
    slot_types: Annotated[list[str], doc("The type of each slot (var: legacy, untyped).")]
    warnings: Annotated[list[str], doc("What operators may refuse later (untyped slots).")]
    totals: BatchTotals
    messages: Annotated[
        list[Annotated[msgspec.Raw, Meta(extra_json_schema={"oneOf": [_RENDERED, _ERROR]})]],
        doc("One per message, in order: its rendering, or its error."),
    ]


class RenderedLink(Closed):
    """A link found in a slot value, and what replaced it."""

    slot: int
    url: str
    short_url: str | None
    link_id: Id | None
    code: str | None


class Rendering(SmsMeasure):
    """A rendered message."""

    original: SmsMeasure
    length_change: LengthChange
    tracking: Tracking
    var_limit: int
    slot_types: Annotated[list[str], doc("The type of each slot (var: legacy, untyped).")]
    warnings: Annotated[list[str], doc("What operators may refuse later (untyped slots).")]
    values: list[str]
    links: list[RenderedLink]


REFERENCED: tuple[type[msgspec.Struct], ...] = (Error, RenderedMessage)
"""Bodies no operation names as its type, reached only by a `$ref` in a raw item's schema (and
every error answer); the rest of the document's bodies come from the operations themselves."""


class PseudonymKey(Closed):
    """The organisation's key of its recipients' pseudonyms."""

    org_id: Id
    key: Annotated[str, doc("The HMAC key, URL-safe base64 without padding.")]
    algorithm: Annotated[str, doc("How a pseudonym is computed from a recipient id.")]


class Erasure(Closed):
    """What an erasure did."""

    erased: Annotated[int, doc("Recipients erased: their ids deleted, their rows renamed.")]
    unknown: Annotated[int, doc("Ids never minted for this organisation, or erased before.")]
    codes: Annotated[int, doc("Short codes of the erased recipients (they keep working).")]


class RecipientIds(Closed):
    """The recipient ids of pseudonyms."""

    recipients: Annotated[
        dict[str, str],
        doc("Pseudonym -> the id it was minted for; erased or unknown pseudonyms are absent."),
    ]
