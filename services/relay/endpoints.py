"""Webhook endpoints of organisations: register, list, remove, and look up for delivery.

An endpoint is an HTTPS URL and a secret minted here (shown once, at registration). URLs with
credentials, non-https schemes, and hosts that are private, loopback, link-local or otherwise not
public addresses are refused, so a customer cannot point the relay at our own network;
`WEBHOOK_ALLOW_INSECURE` lifts that for local development and tests. The relay checks the
resolved address again at delivery time (DNS can change after registration).

The secret has to be readable to sign with it, so it is sealed, not hashed: AES-256-GCM under a
key derived from `WEBHOOK_SECRET_KEY` (`shared.sealing`), bound to its organisation and URL. A
copy of the table (a dump, a backup) without that key holds no usable secret.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from services.relay.signing import new_secret
from shared import audit, db
from shared.errors import ConflictError, MissingRowError, NotFoundError, WebhookError
from shared.sealing import Sealer, derive
from shared.settings import Secret

URL_MAX = 2048


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one organisation's clicks go."""

    id: int
    org_id: int
    url: str
    secret: Secret
    """`whsec_...`: the signing key; `repr` and logs show `***`."""


def secrets_sealer(key: Secret) -> Sealer:
    """The sealer of the endpoints' secrets under `WEBHOOK_SECRET_KEY`."""
    return Sealer(derive(key.reveal().encode(), "clicktrack webhook secret v1"))


def _bound(org_id: int, url: str) -> bytes:
    return f"webhook {org_id} {url}".encode()


def check_url(url: str, *, allow_insecure: bool) -> str:
    """`url` if it is an acceptable endpoint, else `WebhookError` saying why."""
    if len(url) > URL_MAX or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise WebhookError("the URL is too long or holds spaces or control characters")
    parts = urlsplit(url)
    allowed = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in allowed:
        raise WebhookError(f"the URL must start with {' or '.join(s + '://' for s in allowed)}")
    if not parts.hostname:
        raise WebhookError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise WebhookError("the URL must not carry credentials: the signature authenticates us")
    if not allow_insecure and not is_public_host(parts.hostname):
        raise WebhookError("the URL points at a private, loopback or link-local address")
    return url


def is_public_host(host: str) -> bool:
    """False for `localhost` and for IP literals that are not global unicast addresses."""
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True  # a name: its addresses are checked when the relay connects
    return is_public_address(address)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
"""The well-known NAT64 prefix (RFC 6052): on a NAT64 network `64:ff9b::a9fe:a9fe` reaches
169.254.169.254, so the IPv4 address in its last 32 bits is what must be public."""
_EMBEDDING_IPV4 = (
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215): any IPv4 inside
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated): ::a9fe:a9fe
)
"""Prefixes whose addresses carry an IPv4 address we cannot place: never public."""


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address (not private, loopback, link-local, multicast, reserved); an
    IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4) is judged by that one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if any(address in net for net in _EMBEDDING_IPV4):
            return False
    return address.is_global and not address.is_multicast


async def register(
    pool: asyncpg.Pool,
    org_id: int,
    url: str,
    *,
    allow_insecure: bool,
    sealer: Sealer,
    operator: str,
    ticket: str | None,
) -> tuple[Endpoint, str]:
    """Add an endpoint for `org_id`; returns it and its secret (to hand to the customer once).
    The secret is stored sealed by `sealer` (`secrets_sealer`). The organisation's clicks leave
    for that URL from then on: the audit trail records who did it, the ticket and the host (not
    the whole URL, which may carry the customer's token)."""
    check_url(url, allow_insecure=allow_insecure)
    secret = new_secret()
    try:
        with db.errors("Postgres did not answer: register the endpoint again"):
            async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
                endpoint_id = await trail.conn.fetchval(
                    "INSERT INTO webhook_endpoints (org_id, url, sealed_secret)"
                    " VALUES ($1, $2, $3) RETURNING id",
                    org_id,
                    url,
                    sealer.seal(secret.encode(), _bound(org_id, url)),
                )
                await trail.record(
                    "webhook.added", org_id, endpoint=endpoint_id, host=urlsplit(url).hostname
                )
    except MissingRowError:
        raise NotFoundError(f"organisation {org_id} does not exist") from None
    except ConflictError:
        raise WebhookError(f"organisation {org_id} already has an endpoint at this URL") from None
    return Endpoint(endpoint_id, org_id, url, Secret(secret)), secret


async def remove(
    pool: asyncpg.Pool, org_id: int, endpoint_id: int, *, operator: str, ticket: str | None
) -> None:
    """Delete one endpoint of `org_id`, in the audit trail; `NotFoundError` if it has no such
    endpoint."""
    async with audit.acting(pool, operator=operator, ticket=ticket) as trail:
        deleted = await trail.conn.fetchval(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND org_id = $2 RETURNING id",
            endpoint_id,
            org_id,
        )
        if deleted is None:
            raise NotFoundError(f"organisation {org_id} has no webhook endpoint {endpoint_id}")
        await trail.record("webhook.removed", org_id, endpoint=endpoint_id)


async def of_orgs(
    pool: asyncpg.Pool, org_ids: Iterable[int], sealer: Sealer
) -> dict[int, list[Endpoint]]:
    """The enabled endpoints of each of `org_ids` that has any, their secrets opened."""
    rows = await pool.fetch(
        "SELECT id, org_id, url, sealed_secret FROM webhook_endpoints"
        " WHERE org_id = ANY($1::bigint[]) AND enabled AND sealed_secret IS NOT NULL ORDER BY id",
        sorted(set(org_ids)),
    )
    found: dict[int, list[Endpoint]] = {}
    for r in rows:
        secret = sealer.open(r["sealed_secret"], _bound(r["org_id"], r["url"])).decode()
        found.setdefault(r["org_id"], []).append(
            Endpoint(r["id"], r["org_id"], r["url"], Secret(secret))
        )
    return found


async def seal_stored_secrets(conn: asyncpg.Connection, sealer: Sealer) -> int:
    """Seal the secrets stored in clear before migration 0061; returns how many."""
    rows = await conn.fetch(
        "SELECT id, org_id, url, secret FROM webhook_endpoints WHERE secret IS NOT NULL"
    )
    for r in rows:
        await conn.execute(
            "UPDATE webhook_endpoints SET sealed_secret = $2, secret = NULL WHERE id = $1",
            r["id"],
            sealer.seal(r["secret"].encode(), _bound(r["org_id"], r["url"])),
        )
    return len(rows)
