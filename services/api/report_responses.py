"""The reports' response bodies (`services.api.reports`), declared as msgspec Structs; the
OpenAPI document's schemas of them are generated from these types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from services.api.bodies import Time, doc
from services.api.responses import Campaign, Closed, Link, RecipientPage, RenderedMessage
from shared.campaigns import CampaignKind
from shared.events import BOT_KINDS, BotKind, Id

Count = Annotated[int, Meta(ge=0)]
Source = Annotated[
    Literal["redis", "postgres"],
    doc("Where the live totals were read (Postgres when Redis cannot answer)."),
]
# Clicks of links outside any campaign are reported under the kind "none".
KindOrNone = CampaignKind | Literal["none"]


_BOT_KIND_DOCS: dict[BotKind, str] = {
    "user_agent": "A link-preview, crawler or HTTP-library user agent.",
    "referrer": "A referrer of an email or SMS link scanner.",
    "network": "A client address in a configured bot network.",
    "head": "A HEAD request.",
}
if TYPE_CHECKING:

    class BotsByReason(Closed):
        """A count of each kind of bot reason, and `other`."""

else:
    # Built from the one list of kinds, so a new kind of bot reason is a new field here too.
    BotsByReason = msgspec.defstruct(
        "BotsByReason",
        [(kind, Annotated[Count, doc(_BOT_KIND_DOCS[kind])]) for kind in BOT_KINDS]
        + [("other", Annotated[Count, doc("No reason, or one from before reasons were counted.")])],
        bases=(Closed,),
        module=__name__,
    )
    BotsByReason.__doc__ = "Bot hits by the kind of their reason (`bot_reason` of the click event)."


class Counts(Closed):
    """Clicks: human, unique, bots, and taps after the link expired."""

    total: Annotated[Count, doc("Human clicks on live links.")]
    unique: Annotated[
        Count,
        doc(
            "Distinct human visitors of the scope over the period (all time, the window, the"
            " bucket, the group): a visitor who taps two links of a campaign is one."
        ),
    ]
    bots: Annotated[Count, doc("Link previews and scanners, never in total or unique.")]
    after_expiry: Annotated[
        Count,
        doc("Human taps on an expired link (its fallback or a 410), never in total or unique."),
    ]
    bots_by_reason: BotsByReason


class Lag(Closed):
    """How far the counts are behind the clicks."""

    status: Annotated[
        Literal["current", "behind", "unknown"],
        doc("current: every published click is counted; unknown: Kafka did not answer within 1 s."),
    ]
    records: Annotated[int | None, doc("Clicks published, not yet counted.")]
    last_counted_at: Time | None


class Window(Closed):
    """The report's window."""

    start: Annotated[Time, doc("First quarter hour in the window (in tz).")] = msgspec.field(
        name="from"
    )
    to: Annotated[Time, doc("End of the window, exclusive (in tz).")]
    bucket: Literal["hour", "day"]
    tz: str


class Bucket(Counts):
    """The clicks of one bucket of the window."""

    start: Annotated[Time, doc("Bucket start, in tz.")]


class ChannelCounts(Counts):
    """The clicks of one channel."""

    channel: str


class KindCounts(Counts):
    """The clicks of one campaign kind."""

    kind: KindOrNone


class Report(Closed):
    """What every report carries."""

    as_of: Annotated[Time, doc("When the report's reads began (UTC).")]
    lag: Lag
    window: Window
    totals: Annotated[Counts, doc("All time, live.")]
    in_window: Counts
    series: Annotated[
        list[Bucket], doc("Every bucket of the window in order, empty ones as zeros.")
    ]


class LinkReport(Report):
    """Report of a link."""

    link: Link
    totals_source: Source
    by_channel: list[ChannelCounts]


class LinkCounts(Counts):
    """A link of a campaign: its window counts, and all-time totals."""

    link_id: Id
    destination: str
    totals: Counts


class ResendCounts(Closed):
    """A resend to non-clickers: its audience, and their clicks since it was made. Its reused
    codes are the original's, so the clicks also count on the original's links (as every
    resend's reused links do); these are the resend's own, read against its audience."""

    parent_id: Id
    link_id: Annotated[
        Id | None, doc("The original's link whose non-openers it went to; null: non-clickers.")
    ]
    audience: Annotated[Count, doc("Recipients it was sent to.")]
    clicked: Annotated[Count, doc("Recipients of the audience who clicked since: its uniques.")]
    total: Annotated[Count, doc("Human clicks of the audience on the family's links since.")]
    bots: Annotated[Count, doc("Bot hits on the audience's codes since.")]
    after_expiry: Annotated[Count, doc("The audience's taps on expired links since.")]


class FamilyMember(Closed):
    """A campaign of the family and its counts."""

    campaign: Campaign
    totals: Counts
    in_window: Counts
    first_24h: Annotated[
        Counts,
        doc(
            "The 24 hours from the quarter hour the campaign was created in: the same stretch"
            " after each send."
        ),
    ]
    resend: Annotated[ResendCounts | None, doc("A resend to non-clickers: its own numbers.")]


class CampaignReport(Report):
    """Report of a campaign and its family."""

    campaign: Campaign
    totals_source: Source
    by_channel: list[ChannelCounts]
    by_link: Annotated[
        list[LinkCounts],
        doc("The campaign's links (up to 1,000): window counts, then all-time."),
    ]
    family: Annotated[
        list[FamilyMember],
        doc("The original campaign, its resends and recurrences, oldest first."),
    ]
    resend: Annotated[
        ResendCounts | None,
        doc("For a resend to non-clickers: its audience and their clicks since; else null."),
    ]


class CampaignTotals(Closed):
    """A campaign and its live all-time totals."""

    campaign: Campaign
    totals: Counts


class OrgReport(Report):
    """Report of the organisation."""

    org_id: Id
    by_channel: list[ChannelCounts]
    by_kind: list[KindCounts]
    campaigns: Annotated[
        list[CampaignTotals], doc("The newest 500 campaigns with their live all-time totals.")
    ]
    campaigns_source: Source
    campaigns_truncated: bool


_RECIPIENT = (
    "The recipient id the code was minted for (the sender's own, opened for the key's"
    " organisation only); null once the recipient was erased."
)
_PSEUDONYM = (
    "The recipient's pseudonym, as codes, click events and webhooks carry it (32 hex digits);"
    " the lists are in its order."
)


class Clicker(Closed):
    """A recipient who clicked, and how."""

    recipient: Annotated[str | None, doc(_RECIPIENT)]
    pseudonym: Annotated[str, doc(_PSEUDONYM)]
    clicks: Annotated[Count, doc("Human clicks on the live links of the campaign or link.")]
    bot_clicks: Annotated[Count, doc("Bot hits on the recipient's codes (link previews).")]
    after_expiry: Annotated[Count, doc("Taps after the link expired.")]
    first_click: Time
    last_click: Time


class ClickerPage(RecipientPage[Clicker]):
    """A page of the recipients who clicked, in pseudonym order."""


class NonClicker(Closed):
    """A recipient who did not click."""

    recipient: Annotated[str | None, doc(_RECIPIENT)]
    pseudonym: Annotated[str, doc(_PSEUDONYM)]


class NonClickerPage(RecipientPage[NonClicker]):
    """A page of the recipients who did not click, in pseudonym order."""


class ResendMessages(RecipientPage[RenderedMessage]):
    """A page of a resend's messages, in recipient order."""


class ResendCreated(Closed):
    """A resend to non-clickers: the new campaign, its audience, its first messages."""

    campaign: Campaign
    resend: ResendCounts
    messages: Annotated[list[RenderedMessage], doc("The first `limit` messages.")]
    next_after: Annotated[
        str | None, doc("Pass as `after` to GET .../messages for the next page; null: no more.")
    ]
