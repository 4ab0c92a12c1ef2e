"""Whose link a click is on: the counter's check that an event's ids are true.

Anyone who can write to the clicks topic could claim another organisation's link, a campaign the
link is not in, or a link that does not exist, and so put clicks into another tenant's counts.
The redirector takes the org, campaign, kind and channel of an event from the link it resolved;
here each click is held to the same facts, read from Postgres once per link and kept (a link never
moves to another organisation or campaign, and a campaign keeps its kind and channel). A click
that does not match goes to the dead letters with the reason.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import asyncpg

from services.counter.intake import Click
from shared import db

MAX_LINKS = 200_000
"""Links whose owners are kept at once; beyond that the least recently seen are read again."""
POSTGRES_FAILED = "Postgres did not answer the link check: the batch is read again"


@dataclass(frozen=True, slots=True)
class Owner:
    """What a link belongs to, as the redirector puts it into its events."""

    org_id: int
    campaign_id: int | None
    campaign_kind: str | None
    channel: str


_OWNERS = """
SELECT l.id, l.org_id, l.campaign_id, c.kind, coalesce(c.channel, 'sms')
FROM links l LEFT JOIN campaigns c ON c.id = l.campaign_id
WHERE l.id = ANY($1::bigint[])
"""


class LinkOwners:
    """The owners of links, from Postgres, kept in a bounded table (least recently seen out)."""

    def __init__(self, pool: asyncpg.Pool, size: int = MAX_LINKS) -> None:
        self._pool = pool
        self._size = size
        self._known: OrderedDict[int, Owner] = OrderedDict()

    async def refusals(self, clicks: list[Click]) -> list[str | None]:
        """For each click, None if its link is the one it claims, else the reason it is not.
        One query for the links not yet known (none once they are)."""
        missing = {c.link_id for c in clicks if c.link_id not in self._known}
        if missing:
            with db.errors(POSTGRES_FAILED):
                rows = await self._pool.fetch(_OWNERS, list(missing))
            for link_id, org_id, campaign_id, kind, channel in rows:
                self._known[link_id] = Owner(org_id, campaign_id, kind, channel)
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return [self._refusal(c) for c in clicks]

    def _refusal(self, click: Click) -> str | None:
        owner = self._known.get(click.link_id)
        if owner is None:
            return f"link {click.link_id} does not exist"
        self._known.move_to_end(click.link_id)
        if owner.org_id != click.org_id:
            return f"link {click.link_id} is not organisation {click.org_id}'s"
        if owner.campaign_id != click.campaign_id:
            return f"link {click.link_id} is not in campaign {click.campaign_id}"
        if owner.campaign_kind != click.campaign_kind:
            return f"campaign {click.campaign_id} is not of kind {click.campaign_kind}"
        if owner.channel != click.channel:
            return f"campaign {click.campaign_id} is not on channel {click.channel}"
        return None
