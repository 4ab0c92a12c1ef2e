"""Host names as short domains are stored: lower case, IDNA (ASCII), without a trailing dot."""

from __future__ import annotations

import re

from shared.errors import InvalidInputError

_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"({_LABEL}\.)+[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?")
MAX_DOMAIN = 253
"""Longest host name, characters (RFC 1035); migration 0041's `CHECK` says the same."""


def clean_domain(value: object) -> str:
    """A host name as stored (lower case, IDNA, without a trailing dot), or `invalid_domain`."""
    if not isinstance(value, str):
        raise InvalidInputError("domain must be a string", code="invalid_domain")
    name = value.strip().lower().rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        name = "\x00"  # refused below
    if len(name) > MAX_DOMAIN or not _DOMAIN.fullmatch(name):
        raise InvalidInputError(
            f"{value!r} is not a host name like s.brand.in (no scheme, port or path)",
            code="invalid_domain",
        )
    return name


def hostname(host: str) -> str:
    """The host name of a `Host` header or a domain setting: lower case, without a scheme, a
    port or a trailing dot (`S.Brand.in:443` -> `s.brand.in`, `[::1]:8080` -> `[::1]`)."""
    host = host.rpartition("://")[2].strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0].rstrip(".")
