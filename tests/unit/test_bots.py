from __future__ import annotations

import pytest

from services.redirector.bots import BotDetector

IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.6478.122 Mobile Safari/537.36"
)


def reason(ua: str | None, *, method: str = "GET", referer: str | None = None) -> str | None:
    return BotDetector(()).reason(method=method, user_agent=ua, referer=referer, ip="10.1.2.3")


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        ("WhatsApp/2.23.20.0 A", "ua:whatsapp"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like"
            " Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
            "ua:imessage",
        ),
        ("TelegramBot (like TwitterBot)", "ua:telegram"),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "ua:slack"),
        (
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "ua:facebook",
        ),
        ("Twitterbot/1.0", "ua:twitter"),
        (
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML,"
            " like Gecko) Chrome/126.0 Mobile Safari/537.36 (compatible; Googlebot/2.1;"
            " +http://www.google.com/bot.html)",
            "ua:google",
        ),
        (
            "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5"
            " skype-url-preview@microsoft.com",
            "ua:skype",
        ),
        ("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/126.0.0.0 Safari/537.36", "ua:headless"),
        ("curl/8.5.0", "ua:http-library"),
        ("python-requests/2.32.3", "ua:http-library"),
        ("Go-http-client/1.1", "ua:http-library"),
        ("okhttp/4.12.0", "ua:http-library"),
        ("Mozilla/5.0 (compatible; Examplebot/1.0; +https://example.com/bot)", "ua:crawler"),
        (None, "ua:missing"),
        ("", "ua:missing"),
    ],
)
def test_known_non_human_user_agents_are_flagged(ua: str | None, expected: str) -> None:
    assert reason(ua) == expected


@pytest.mark.parametrize(
    "ua",
    [
        IPHONE_SAFARI,
        ANDROID_CHROME,
        "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko)"
        " SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
        # Facebook's and Instagram's in-app browsers are people, not the preview fetcher.
        IPHONE_SAFARI + " [FBAN/FBIOS;FBAV/470.0.0.0;FBBV/600000000]",
        ANDROID_CHROME + " Instagram 330.0.0.0.0 Android",
        # A phone model with "bot" inside its name.
        "Mozilla/5.0 (Linux; Android 12; CUBOT X30 Build/SP1A) AppleWebKit/537.36 (KHTML, like"
        " Gecko) Chrome/120.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ],
)
def test_people_are_not_flagged(ua: str) -> None:
    assert reason(ua) is None


def test_head_is_a_bot_whatever_the_user_agent() -> None:
    assert reason(IPHONE_SAFARI, method="HEAD") == "head"


@pytest.mark.parametrize(
    ("referer", "expected"),
    [
        ("https://nam02.safelinks.protection.outlook.com/?url=x", "referer:safelinks"),
        ("https://urldefense.proofpoint.com/v2/url?u=x", "referer:proofpoint"),
        ("https://urldefense.com/v3/__https://x", "referer:proofpoint"),
        ("https://www.google.com/", None),
    ],
)
def test_link_scanner_referrers_are_flagged(referer: str, expected: str | None) -> None:
    assert reason(IPHONE_SAFARI, referer=referer) == expected


def test_configured_networks_are_flagged() -> None:
    detector = BotDetector(("203.0.113.0/24", "2001:db8::/32"))
    ask = detector.reason
    assert ask(method="GET", user_agent=IPHONE_SAFARI, referer=None, ip="203.0.113.77") == (
        "cidr:203.0.113.0/24"
    )
    assert ask(method="GET", user_agent=IPHONE_SAFARI, referer=None, ip="2001:db8::1") == (
        "cidr:2001:db8::/32"
    )
    assert ask(method="GET", user_agent=IPHONE_SAFARI, referer=None, ip="198.51.100.1") is None
    assert ask(method="GET", user_agent=IPHONE_SAFARI, referer=None, ip="not-an-ip") is None
