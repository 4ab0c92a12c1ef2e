"""What the redirector trusts: which Location it will send (the client address it believes is
`shared.client_address`)."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

HEADER_MAX = 512
"""Characters of User-Agent and Referer kept in a click event."""

_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f", "\\"}


@lru_cache(maxsize=4096)  # a few hot destinations; at most 4096 x 8 KiB of keys
def safe_location(url: str) -> bool:
    """True if `url` may be sent as a `Location` header.

    Destinations are validated when links are created; this is the last line: it refuses any
    stored value that could split the response (CR, LF, any control character or space), leave
    http(s) (`javascript:`), hide another host (a backslash, which browsers read as a slash), or
    lack a host. Memoised: a destination is checked once per process, not once per click.
    """
    if not url.startswith(("http://", "https://")) or len(url) > 8192:
        return False
    if any(ch in _FORBIDDEN for ch in url) or not url.isprintable():
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        return False
    return bool(host)


def clip(value: str | None) -> str | None:
    """A header value cut to `HEADER_MAX` characters and made valid text; None when absent or
    empty.

    aiohttp decodes header bytes that are not UTF-8 into lone surrogates, which no JSON encoder
    will write: such bytes become U+FFFD, so a hostile User-Agent cannot fail the click event.
    """
    if not value:
        return None
    value = value[:HEADER_MAX]
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
