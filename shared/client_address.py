"""Which client address to believe: the peer, or behind trusted proxies `X-Forwarded-For`.

The redirector (bot networks, the truncated IP of a click) and the API (rate limits per client)
both need it, behind the same kind of load balancer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

MAX_HOPS = 16
"""Hops of the chain looked at, from the right: more is a forged chain, not a network."""


class ClientAddress:
    """Finds the client's address: the peer, or behind trusted proxies `X-Forwarded-For`.

    The chain is every `X-Forwarded-For` header line joined in order (HAProxy and others append
    a line of their own rather than extend the first one), read right to left, skipping the
    trusted proxies (load balancers) that appended to it; the first address not trusted is the
    client. Without trusted proxies the header is ignored, since anyone can send it.
    """

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self._trusted = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)

    @property
    def proxied(self) -> bool:
        """True when some proxy is trusted (else `of` is always the peer)."""
        return bool(self._trusted)

    def of(self, peer: str | None, forwarded_for: Iterable[str] | str | None) -> str | None:
        """The client address as text, or `peer` when no proxy is trusted.

        `forwarded_for`: the `X-Forwarded-For` header lines in the order received
        (`request.headers.getall("X-Forwarded-For", ())`), or one line.
        """
        if not self._trusted or not peer or not self._is_trusted(peer):
            return peer
        if not forwarded_for:
            return peer
        chain = forwarded_for if isinstance(forwarded_for, str) else ",".join(forwarded_for)
        hops = [h.strip() for h in chain.split(",")[-MAX_HOPS:]]
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
