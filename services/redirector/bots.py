"""Which requests are not a person tapping a link: link previews, scanners, scripts.

Bots are still redirected (a preview that gets a 404 shows a broken card, and a scanner may
quarantine the message), but their click events carry `is_bot` and a `bot_reason`, and the
counter keeps them out of the human counts. Signals, first match wins:

- `head`: a HEAD request (previews and scanners probe, browsers GET);
- `ua:<name>`: a user agent in `USER_AGENTS` (link-preview fetchers, crawlers, headless
  browsers, HTTP libraries), or `ua:missing` when there is none (every browser sends one);
- `referer:<name>`: a referrer of an email/SMS link scanner (`SCANNER_REFERERS`);
- `cidr:<network>`: a client address inside a configured network (`BOT_CIDRS`), e.g. a
  carrier's URL scanner.

The lists are data: extend them here, with the product the string comes from.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

# (reason name, pattern matched case-insensitively anywhere in the User-Agent). Order matters:
# iMessage's fetcher claims to be Facebook and Twitter, so it is tested first.
USER_AGENTS: tuple[tuple[str, str], ...] = (
    ("imessage", r"facebookexternalhit/1\.1 Facebot Twitterbot/1\.0"),
    ("whatsapp", r"WhatsApp"),
    ("telegram", r"TelegramBot"),
    ("slack", r"Slackbot|Slack-ImgProxy|Slack-LinkExpanding"),
    ("facebook", r"facebookexternalhit|Facebot|meta-externalagent|meta-externalfetcher"),
    ("twitter", r"Twitterbot"),
    (
        "google",
        r"Googlebot|Google-InspectionTool|AdsBot-Google|Mediapartners-Google|GoogleOther"
        r"|Google-Read-Aloud|FeedFetcher-Google|Google-PageRenderer|Google-Safety|APIs-Google",
    ),
    ("skype", r"SkypeUriPreview|MicrosoftPreview|Teams/\S+ Preview|msnbot|bingbot|BingPreview"),
    ("linkedin", r"LinkedInBot"),
    ("discord", r"Discordbot"),
    ("snapchat", r"Snap URL Preview"),
    ("pinterest", r"Pinterest(?:bot)?/"),
    ("apple", r"Applebot"),
    ("yandex", r"YandexBot|YandexMobileBot"),
    ("baidu", r"Baiduspider"),
    ("duckduckgo", r"DuckDuckBot|DuckDuckGo-Favicons-Bot"),
    ("headless", r"HeadlessChrome|PhantomJS|Puppeteer|Playwright|Lighthouse|Electron/"),
    (
        "http-library",
        r"^curl/|Wget/|python-requests|python-urllib|python-httpx|aiohttp/|httpx/"
        r"|Go-http-client|okhttp|^Java/|Apache-HttpClient|libwww-perl|node-fetch|axios/|undici"
        r"|Scrapy|PostmanRuntime|Dalvik/|CFNetwork/\S+ Darwin/\S+$|^Ruby|^PHP",
    ),
    (
        "scanner",
        r"Proofpoint|Mimecast|Barracuda|Symantec|ZScaler|SafeLinks|urlscan|Trend ?Micro"
        r"|Forcepoint|Bitdefender|Kaspersky|Sophos|Fortinet|FortiGuard|Cisco|Ironport|Netcraft",
    ),
    # Generic: "Examplebot/1.0", "(compatible; bot; ...)" but not a phone model like "CUBOT X30".
    (
        "crawler",
        r"[a-z]bot/|[^a-z]bot[^a-z]|crawler|spider|slurp|facebookcatalog|embedly"
        r"|vkShare",
    ),
)

# Referrers set by email/SMS security gateways that open links before the person does.
SCANNER_REFERERS: tuple[tuple[str, str], ...] = (
    ("safelinks", r"safelinks\.protection\.outlook\.com"),
    ("proofpoint", r"urldefense\.(?:proofpoint\.)?com"),
    ("mimecast", r"mimecast\.com|protect-\w+\.mimecast"),
    ("barracuda", r"linkprotect\.cudasvc\.com"),
    ("google-safebrowsing", r"safebrowsing\.google"),
)

_UA_PATTERN = re.compile(
    "|".join(f"(?P<u{i}>{pattern})" for i, (_, pattern) in enumerate(USER_AGENTS)), re.IGNORECASE
)
_REFERER_PATTERN = re.compile(
    "|".join(f"(?P<r{i}>{pattern})" for i, (_, pattern) in enumerate(SCANNER_REFERERS)),
    re.IGNORECASE,
)
_CACHE_SIZE = 4096


@lru_cache(maxsize=_CACHE_SIZE)
def user_agent_reason(user_agent: str | None) -> str | None:
    """`ua:<name>` when the user agent is a known non-human one (or missing), else None."""
    if not user_agent:
        return "ua:missing"
    found = _UA_PATTERN.search(user_agent)
    if found is None or found.lastgroup is None:
        return None
    return "ua:" + USER_AGENTS[int(found.lastgroup[1:])][0]


@lru_cache(maxsize=_CACHE_SIZE)
def referer_reason(referer: str | None) -> str | None:
    """`referer:<name>` when the referrer is a known link scanner, else None."""
    if not referer:
        return None
    found = _REFERER_PATTERN.search(referer)
    if found is None or found.lastgroup is None:
        return None
    return "referer:" + SCANNER_REFERERS[int(found.lastgroup[1:])][0]


class BotDetector:
    """Classifies one request; `cidrs` are the configured bot networks (`BOT_CIDRS`)."""

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        self._networks = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        # Addresses repeat (carrier NATs, scanners); parsing one costs microseconds.
        self._ip_reason = lru_cache(maxsize=_CACHE_SIZE)(self._network_of)

    def reason(
        self, method: str, user_agent: str | None, referer: str | None, ip: str | None
    ) -> str | None:
        """Why this request is a bot (see the module docstring), or None for a person."""
        if method == "HEAD":
            return "head"
        found = user_agent_reason(user_agent) or referer_reason(referer)
        if found is None and self._networks and ip:
            found = self._ip_reason(ip)
        return found

    def _network_of(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for network in self._networks:
            if addr.version == network.version and addr in network:
                return f"cidr:{network}"
        return None
