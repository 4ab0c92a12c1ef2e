"""Webhook signatures, as the Standard Webhooks spec (standardwebhooks.com, used by Svix) has them.

Every delivery carries three headers:

    webhook-id         msg_<hex>: the same on every retry of one delivery (dedup key)
    webhook-timestamp  seconds since the epoch when this attempt was signed
    webhook-signature  v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>

The key is the base64 part of the endpoint's secret `whsec_<base64>`. Signing the timestamp with
the body lets a receiver refuse replays: reject a timestamp more than 5 minutes from its clock.
Receivers can use any Standard Webhooks library, or `verify` below.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from shared.errors import SignatureError

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 300


def new_secret() -> str:
    """A fresh endpoint secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise SignatureError("the webhook secret is not valid base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for `body` sent as `msg_id` at `timestamp` (seconds)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three signature headers for one delivery attempt."""
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    received: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> str:
    """Check a received webhook; returns its `webhook-id`, raises `SignatureError` if it is bad.

    `received` is the request's headers (names in lower case, or a case-insensitive mapping).
    A signature header may hold several space-separated `v1,...` values (during secret rotation):
    one match is enough.
    """
    msg_id = received.get("webhook-id")
    stamp = received.get("webhook-timestamp")
    signatures = received.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not a whole number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("webhook-timestamp is too far from now: a replay?")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in signatures.split()):
        raise SignatureError("no webhook-signature matches")
    return msg_id
