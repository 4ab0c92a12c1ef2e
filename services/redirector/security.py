"""What the redirector trusts: which Location it will send, and which client address it believes."""

from __future__ import annotations

import ipaddress
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


class ClientAddress:
    """Finds the client's address: the peer, or behind trusted proxies `X-Forwarded-For`.

    `X-Forwarded-For` is read right to left, skipping the trusted proxies (load balancers) that
    appended to it; the first address not trusted is the client. Without trusted proxies the
    header is ignored, since anyone can send it.
    """

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)

    def of(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client address as text, or `peer` when no proxy is trusted."""
        if not self._trusted or not peer or not self._is_trusted(peer):
            return peer
        if not forwarded_for:
            return peer
        hops = [h.strip() for h in forwarded_for.split(",")[-16:]]
        for hop in reversed(hops):
            if not hop or not _is_ip(hop):
                return peer  # a malformed chain is not believed
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def trusts(self, peer: str | None) -> bool:
        """Whether `peer` is one of the trusted proxies (whose forwarded headers count)."""
        return peer is not None and self._is_trusted(peer)

    def _is_trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self._trusted)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
