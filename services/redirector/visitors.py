"""Who clicked: the visitor id used for unique counts, and the first-party cookie that keeps it."""

from __future__ import annotations

import hashlib
import hmac
import re

COOKIE_NAME = "ct_vid"
COOKIE_MAX_AGE_S = 2 * 365 * 24 * 3600
_COOKIE_SHAPE = re.compile(r"[0-9a-f]{32}")


def visitor_id(
    *,
    recipient_id: str | None,
    cookie: str | None,
    ip: str | None,
    user_agent: str | None,
    key: bytes,
) -> tuple[str, str | None]:
    """(visitor id, cookie value to set or None).

    Strongest identity first: the recipient the code was minted for; else our cookie; else a
    keyed hash of IP and user agent, which also becomes the cookie so that the visitor keeps the
    same id when their address changes.
    """
    if cookie and _COOKIE_SHAPE.fullmatch(cookie):
        from_cookie: str | None = cookie
    else:
        from_cookie = None
    if recipient_id:
        return f"r:{recipient_id}", None
    if from_cookie:
        return f"v:{from_cookie}", None
    digest = hmac.new(key, f"{ip or ''}|{user_agent or ''}".encode(), hashlib.sha256).hexdigest()
    value = digest[:32]
    return f"v:{value}", value
