"""Who clicked: the visitor id used for unique counts, and the signed cookie that keeps it.

The cookie is `<visitor>.<key id>.<signature>`: the visitor's 32 hex digits, the id of the key
that signed it (8 hex digits, derived from the key) and an HMAC-SHA256 of both, cut to 128 bits,
under a key derived from `VISITOR_HASH_KEY`. A cookie that does not verify (forged, altered, or
signed by a key no longer accepted) is ignored: the visitor falls back to the keyed hash of IP and
user agent, so scripted taps with made-up cookies cannot add uniques. During a key rotation the
previous key (`VISITOR_HASH_KEY_PREVIOUS`) still verifies, and such a cookie is signed again with
the new key, so a returning visitor keeps the same id.
"""

from __future__ import annotations

import hashlib
import hmac
import re

COOKIE_NAME = "ct_vid"
COOKIE_MAX_AGE_S = 2 * 365 * 24 * 3600
_COOKIE_SHAPE = re.compile(r"([0-9a-f]{32})\.([0-9a-f]{8})\.([0-9a-f]{32})")


def key_id(key: bytes) -> str:
    """8 hex digits naming `key` in the cookies it signs (a hash of it: tells keys apart, and
    reveals nothing usable about a random key)."""
    return hashlib.sha256(b"clicktrack key id\x00" + key).hexdigest()[:8]


class VisitorKeys:
    """The visitor-hash key and the cookie keys derived from it (and from the previous key)."""

    __slots__ = ("_current", "_hash_key", "_signers")

    def __init__(self, key: bytes, previous: bytes = b"") -> None:
        if not key:
            raise ValueError("the visitor key is empty")
        self._hash_key = key
        self._current = key_id(key)
        self._signers = {
            key_id(k): hmac.new(k, b"clicktrack visitor cookie v1", hashlib.sha256).digest()
            for k in (previous, key)
            if k
        }

    def hash(self, ip: str | None, user_agent: str | None) -> str:
        """32 hex digits: the keyed hash of the (truncated or full) IP and the user agent."""
        message = f"{ip or ''}|{user_agent or ''}".encode()
        return hmac.new(self._hash_key, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, visitor: str) -> str:
        """The cookie value for `visitor` (32 hex digits), signed with the current key."""
        return f"{visitor}.{self._current}.{self._mac(self._current, visitor)}"

    def verify(self, cookie: str | None) -> tuple[str, bool] | None:
        """(visitor, signed with the current key) if `cookie` is genuine; else None."""
        if not cookie or not (shape := _COOKIE_SHAPE.fullmatch(cookie)):
            return None
        visitor, kid, signature = shape.groups()
        if kid not in self._signers:
            return None
        if not hmac.compare_digest(self._mac(kid, visitor), signature):
            return None
        return visitor, kid == self._current

    def _mac(self, kid: str, visitor: str) -> str:
        message = f"{visitor}.{kid}".encode()
        return hmac.new(self._signers[kid], message, hashlib.sha256).hexdigest()[:32]


def visitor_id(
    *,
    recipient_id: str | None,
    cookie: str | None,
    ip: str | None,
    user_agent: str | None,
    keys: VisitorKeys,
) -> tuple[str, str | None]:
    """(visitor id, cookie value to set or None).

    Strongest identity first: the recipient the code was minted for; else our cookie if its
    signature holds; else a keyed hash of IP and user agent, which also becomes the (signed)
    cookie so that the visitor keeps the same id when their address changes.
    """
    if recipient_id:
        return f"r:{recipient_id}", None
    verified = keys.verify(cookie)
    if verified is not None:
        visitor, current = verified
        return f"v:{visitor}", None if current else keys.sign(visitor)
    visitor = keys.hash(ip, user_agent)
    return f"v:{visitor}", keys.sign(visitor)
