"""URLs in message text: finding them as a phone would, and normalising destinations.

`find_urls` recognises what SMS apps turn into tappable links: `http(s)://...`, `www....` and bare
`domain.tld/path` for common top-level domains, with trailing punctuation left out (as Android's
Linkify does). It serves both DLT rules: a link in a template's fixed text is refused, a link in a
slot value is replaced by a short link. A scheme-less link gets `http://`, which is what a phone
opens when the recipient taps it.

`normalise_destination` is the one gate every stored destination and fallback URL passes:
absolute http(s) only, a real host, no user info (`https://bank.example@evil.example` tricks the
eye), no spaces or control characters (they could split a `Location` header), at most 2,048
characters; scheme and host lower-cased, the host IDNA-encoded, a default port dropped, an empty
path made `/`, and non-ASCII or unsafe characters percent-encoded as UTF-8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from shared.errors import InvalidLinkError

MAX_URL_LENGTH = 2048
"""Longest destination accepted, characters (what every browser handles)."""

_TLDS = (
    "com|net|org|in|co|io|ly|me|info|biz|app|xyz|online|site|shop|store|link|gl|page|ai|us|uk|"
    "au|ca|de|to|gov|edu|tv|cc|club|live|tech"
)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_URL = re.compile(
    r"(?<![\w@.\-/])(?:"
    r"https?://[^\s<>\"/][^\s<>\"]*"
    r"|www\.[^\s<>\"]+"
    rf"|(?:{_LABEL}\.)+(?:{_TLDS})(?![\w\-])(?:[/?#][^\s<>\"]*)?"
    r")",
    re.IGNORECASE,
)
_TRAILING = ".,;:!?'\""
# Printable ASCII a URL may carry as is; everything else (non-ASCII, `"<>\^`{|}`) is encoded.
_SAFE = "!#$%&'()*+,-./:;=?@[]_~"


@dataclass(frozen=True, slots=True)
class FoundUrl:
    """A link found in text."""

    start: int
    """Index of its first character in the text."""
    end: int
    """Index just past its last character."""
    text: str
    """The link as written."""

    @property
    def url(self) -> str:
        """The link as a phone would open it: `http://` added when it has no scheme."""
        if re.match(r"https?://", self.text, re.IGNORECASE):
            return self.text
        return "http://" + self.text


def find_urls(text: str) -> list[FoundUrl]:
    """Every link in `text`, in order, without trailing punctuation."""
    found: list[FoundUrl] = []
    for match in _URL.finditer(text):
        chunk = match.group()
        end = len(chunk)
        opened, closed = chunk.count("("), chunk.count(")")
        while end and (chunk[end - 1] in _TRAILING or (chunk[end - 1] == ")" and opened < closed)):
            closed -= chunk[end - 1] == ")"
            end -= 1
        chunk = chunk[:end]
        if chunk.lower() in ("http://", "https://", "www."):
            continue
        found.append(FoundUrl(match.start(), match.start() + len(chunk), chunk))
    return found


def normalise_destination(url: str) -> str:
    """The canonical form of an http(s) URL, or `InvalidLinkError` saying what is wrong."""
    if any(ord(ch) < 0x21 or ch == "\x7f" for ch in url):
        raise InvalidLinkError("destination contains spaces or control characters")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidLinkError(f"destination is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidLinkError(f"destination is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not url[len(scheme) :].startswith("://"):
        raise InvalidLinkError("destination must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidLinkError("destination has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidLinkError("destination must not carry a user name or password")
    host = _ascii_host(parts.hostname)
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    path = quote(parts.path, safe=_SAFE) or "/"
    normal = urlunsplit(
        (
            scheme,
            netloc,
            path,
            quote(parts.query, safe=_SAFE),
            quote(parts.fragment, safe=_SAFE),
        )
    )
    if len(normal) > MAX_URL_LENGTH:
        raise InvalidLinkError(f"destination is longer than {MAX_URL_LENGTH} characters")
    return normal


def _ascii_host(hostname: str) -> str:
    if hostname.isascii():
        if not re.fullmatch(r"[a-z0-9._\-:]+", hostname):
            raise InvalidLinkError(f"destination host {hostname!r} is not a valid host name")
        return hostname
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidLinkError(f"destination host {hostname!r} is not a valid host name") from None
