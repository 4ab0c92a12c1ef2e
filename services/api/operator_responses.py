"""The response bodies of the operator's DLT-related routes and the audit trail: short domains,
DLT whitelists, the whitelist pre-flight, audit entries (msgspec Structs, as in
`services.api.responses`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from services.api.bodies import Time, doc
from services.api.responses import Closed, IdPage
from shared.events import Id


class AuditEntry(Closed):
    """One operator action."""

    id: Id
    at: Time
    operator: Annotated[str, doc("Name of the operator credential (OPERATOR_NAME, cli:login).")]
    action: Annotated[str, doc("What was done: org.created, tracking.enabled, key.issued, ...")]
    org_id: Id | None
    ticket: Annotated[str | None, doc("The support ticket it answers.")]
    detail: Annotated[dict[str, Any], doc("What changed.")]


class AuditPage(IdPage[AuditEntry]):
    """A page of the audit trail, oldest first."""


class ShortDomain(Closed):
    """A short domain of an organisation."""

    domain: str
    org_id: Id
    is_default: bool
    created_at: Time


class ShortDomainList(msgspec.Struct):
    """An organisation's short domains, the default first."""

    items: list[ShortDomain]


class WhitelistEntry(Closed):
    """An entry of an organisation's DLT whitelist."""

    id: Id
    org_id: Id
    kind: Annotated[Literal["short_domain", "url"], doc("A short domain, or a URL prefix.")]
    value: str
    header: Annotated[str | None, doc("A short domain's header; null: every header.")]
    dlt_ref: Annotated[str | None, doc("The DLT portal's reference.")]
    whitelisted_on: date | None
    created_at: Time


class WhitelistList(msgspec.Struct):
    """An organisation's DLT whitelist: short domains, then URL prefixes."""

    items: list[WhitelistEntry]


class WhitelistItem(Closed):
    """An entry added (or that would be added) to a whitelist."""

    kind: Literal["short_domain", "url"]
    value: str
    header: str | None
    dlt_ref: str | None
    whitelisted_on: date | None


class WhitelistChange(Closed):
    """What an addition or an import added, and what the whitelist held already."""

    dry_run: Annotated[bool, doc("True: nothing was written.")]
    added: list[WhitelistItem]
    kept: Annotated[list[WhitelistItem], doc("Already whitelisted (or twice in the import).")]


class NeededEntry(Closed):
    """An entry a message needs on the organisation's DLT whitelist."""

    kind: Literal["short_domain", "url"]
    value: str
    header: Annotated[str | None, doc("The header the short domain is needed with.")]
    whitelisted: bool
    dlt_ref: Annotated[str | None, doc("The reference of the entry that covers it.")]


class WhitelistPreflight(Closed):
    """What must be whitelisted on DLT before the messages are sent."""

    tracking: Annotated[bool, doc("Links become short links (else they are sent as given).")]
    enforced: Annotated[bool, doc("Rendering refuses what is not whitelisted.")]
    ready: Annotated[bool, doc("Every needed entry is whitelisted.")]
    needed: list[NeededEntry]
