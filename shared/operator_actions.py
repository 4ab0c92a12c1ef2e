"""What an operator does to an organisation, each action with its audit row in one transaction.

The CLI (`services/cli/operator.py`) and the operator API (`services/api/orgs.py`) both call
these, so an action is recorded the same way whichever way it was taken. A tracking switch also
has to reach the redirectors: `forget_org` drops the organisation's links from Redis and from
every redirector's memory (the caller runs it after the commit, and once more a moment later).
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from shared import apikeys, audit, orgs
from shared.apikeys import ApiKey
from shared.link_cache import invalidate_org
from shared.orgs import Org

FORGET_AGAIN_S = 2.0
"""Delay of the second cache drop after a tracking switch, seconds: a redirector that read the
old state just before the switch may write it back to Redis after the first drop."""


async def create_org(
    pool: asyncpg.Pool, name: str, *, operator: str, ticket: str | None, key_name: str | None
) -> tuple[Org, tuple[ApiKey, str] | None]:
    """A new organisation (tracking off) and, when `key_name` is given, its first API key."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        org = await orgs.get_org(trail.conn, await orgs.create_org(trail.conn, name))
        await trail.record("org.created", org.id, name=org.name)
        key = None
        if key_name is not None:
            key = await apikeys.create_api_key(trail.conn, org.id, key_name)
            await trail.record("key.issued", org.id, key_id=key[0].id, name=key_name)
    return org, key


async def set_time_zone(
    pool: asyncpg.Pool, org_id: int, zone: str, *, operator: str, ticket: str | None
) -> Org:
    """Set the time zone of the organisation's reports (an IANA name, `invalid_tz` otherwise)."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        org = await orgs.set_time_zone(trail.conn, org_id, zone)
        await trail.record("org.time_zone", org_id, time_zone=org.time_zone)
    return org


async def switch_tracking(
    pool: asyncpg.Pool, org_id: int, enabled: bool, *, operator: str, ticket: str | None
) -> tuple[Org, list[int]]:
    """Switch link tracking on or off; returns the organisation and the ids of its links (for
    `forget_org`). Waits for minting transactions of the organisation to commit first."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        before = await orgs.get_org(trail.conn, org_id)
        org = await orgs.set_link_tracking(trail.conn, org_id, enabled)
        await trail.record(
            "tracking.enabled" if enabled else "tracking.disabled",
            org_id,
            changed=before.link_tracking_enabled != enabled,
        )
        rows = await trail.conn.fetch("SELECT id FROM links WHERE org_id = $1", org_id)
    link_ids = [r["id"] for r in rows]
    return org, link_ids


async def forget_org(redis: aioredis.Redis, org_id: int, link_ids: list[int]) -> None:
    """Drop the organisation's links from Redis and from every redirector's memory."""
    await invalidate_org(redis, org_id, link_ids)


async def issue_key(
    pool: asyncpg.Pool, org_id: int, name: str, *, operator: str, ticket: str | None
) -> tuple[ApiKey, str]:
    """A new API key of the organisation (the record, and the key shown once)."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        org = await orgs.get_org(trail.conn, org_id)
        record, key = await apikeys.create_api_key(trail.conn, org.id, name)
        await trail.record("key.issued", org.id, key_id=record.id, name=name)
    return record, key


async def revoke_key(
    pool: asyncpg.Pool, org_id: int, key_id: int, *, operator: str, ticket: str | None
) -> ApiKey:
    """Revoke one of the organisation's keys: the API refuses it from then on. Revoking a
    revoked key keeps its first revocation time."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        record = await apikeys.revoke_api_key(trail.conn, org_id, key_id)
        await trail.record("key.revoked", org_id, key_id=key_id)
    return record
