"""Webhook signatures (Standard Webhooks) and the endpoint URL rules."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from services.relay import signing
from services.relay.delivery import Deliverer, PublicOnlyResolver, message_id
from services.relay.endpoints import Endpoint, check_url
from shared.errors import DeliveryError, SignatureError, WebhookError
from shared.settings import Secret
from tests.unit.test_events import make_event

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = b'{"type":"clicks.v1"}'


def test_signature_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    expected = hmac.new(b"k" * 32, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert signing.sign(SECRET, "msg_1", 1_700_000_000, BODY) == (
        "v1," + base64.b64encode(expected).decode()
    )


def test_the_standard_webhooks_example_verifies() -> None:
    # The test vector of the Standard Webhooks spec (github.com/standard-webhooks).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_what_headers_signed() -> None:
    sent = signing.headers(SECRET, "msg_2", BODY, now=1_700_000_000)
    assert signing.verify(SECRET, sent, BODY, now=1_700_000_100) == "msg_2"
    rotated = {**sent, "webhook-signature": "v1,AAAA " + sent["webhook-signature"]}
    assert signing.verify(SECRET, rotated, BODY, now=1_700_000_000) == "msg_2"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": BODY + b" "}, "no webhook-signature matches"),
        ({"webhook-id": "msg_3"}, "no webhook-signature matches"),
        ({"webhook-timestamp": "1700000001"}, "no webhook-signature matches"),
        ({"now": 1_700_000_301}, "webhook-timestamp is too far from now: a replay?"),
        ({"now": 1_699_999_699}, "webhook-timestamp is too far from now: a replay?"),
        ({"webhook-signature": ""}, "missing webhook-id, webhook-timestamp or webhook-signature"),
        ({"webhook-timestamp": "soon"}, "webhook-timestamp is not a whole number"),
        ({"secret": "whsec_" + base64.b64encode(b"x" * 32).decode()}, "no webhook-signature"),
    ],
)
def test_verify_refuses_tampering_and_replays(change: dict[str, object], reason: str) -> None:
    sent = signing.headers(SECRET, "msg_2", BODY, now=1_700_000_000)
    received = {k: str(change.get(k, v)) for k, v in sent.items()}
    body = change.get("body", BODY)
    now = change.get("now", 1_700_000_000)
    secret = str(change.get("secret", SECRET))
    assert isinstance(body, bytes) and isinstance(now, int)
    with pytest.raises(SignatureError) as caught:
        signing.verify(secret, received, body, now=now)
    assert str(caught.value).startswith(reason)


def test_new_secrets_are_random_and_well_formed() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    assert a != b and a.startswith("whsec_")
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


def test_a_secret_never_shows_in_repr() -> None:
    endpoint = Endpoint(1, 2, "https://hooks.example.com/x", Secret(SECRET))
    assert SECRET not in repr(endpoint)
    assert SECRET.removeprefix("whsec_") not in str(endpoint)


def test_message_ids_are_stable_per_endpoint_and_events() -> None:
    events = [make_event(), make_event()]
    one = Endpoint(1, 2, "https://a.example.com", Secret(SECRET))
    two = Endpoint(2, 2, "https://a.example.com", Secret(SECRET))
    assert message_id(one, events) == message_id(one, list(events))
    assert message_id(one, events) != message_id(two, events)
    assert message_id(one, events) != message_id(one, events[:1])


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/clicks",
        "https://93.184.215.14:8443/in?token=abc",
        "https://[64:ff9b::5db8:d70e]/in",  # NAT64 of 93.184.215.14: public
        "https://[2606:4700::6810:84e5]/in",
    ],
)
def test_public_https_urls_are_accepted(url: str) -> None:
    assert check_url(url, allow_insecure=False) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/", "the URL must start with https://"),
        ("ftp://hooks.example.com/", "the URL must start with https://"),
        ("https:///path", "the URL has no host"),
        ("https://user:pw@hooks.example.com/", "the URL must not carry credentials"),
        ("https://127.0.0.1/", "the URL points at a private"),
        ("https://10.1.2.3/", "the URL points at a private"),
        ("https://169.254.169.254/latest/meta-data", "the URL points at a private"),
        ("https://[::1]/", "the URL points at a private"),
        ("https://[::ffff:192.168.0.1]/", "the URL points at a private"),
        ("https://[64:ff9b::a9fe:a9fe]/", "the URL points at a private"),  # NAT64 metadata
        ("https://[64:ff9b::7f00:1]/", "the URL points at a private"),
        ("https://[64:ff9b:1::a9fe:a9fe]/", "the URL points at a private"),
        ("https://[2002:a9fe:a9fe::1]/", "the URL points at a private"),  # 6to4
        ("https://[::a9fe:a9fe]/", "the URL points at a private"),
        ("https://localhost/", "the URL points at a private"),
        ("https://api.localhost/", "the URL points at a private"),
        ("https://hooks.example.com/a b", "the URL is too long or holds spaces"),
        ("https://hooks.example.com/\r\nX: y", "the URL is too long or holds spaces"),
        ("https://hooks.example.com/" + "a" * 2048, "the URL is too long"),
    ],
)
def test_unsafe_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(WebhookError) as caught:
        check_url(url, allow_insecure=False)
    assert str(caught.value).startswith(reason)


def test_insecure_mode_allows_local_http_for_development() -> None:
    url = "http://127.0.0.1:18300/hook"
    assert check_url(url, allow_insecure=True) == url
    with pytest.raises(WebhookError):
        check_url("ftp://127.0.0.1/", allow_insecure=True)


async def test_names_resolving_only_to_private_addresses_are_refused() -> None:
    resolver = PublicOnlyResolver()
    try:
        with pytest.raises(OSError, match="localhost resolves only to private addresses"):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()


async def test_a_private_endpoint_is_never_contacted_nor_retried() -> None:
    endpoint = Endpoint(1, 2, "https://127.0.0.1:18399/hook", Secret(SECRET))
    async with Deliverer(
        max_attempts=5, backoff_s=10.0, timeout_s=1.0, allow_insecure=False
    ) as deliverer:
        outcome = await deliverer.deliver(endpoint, [make_event()])
    assert (outcome.delivered, outcome.attempts) == (False, 1)
    assert outcome.error == "the endpoint's host is not a public address"


def test_backoff_doubles_with_jitter_and_honours_retry_after() -> None:
    deliverer = Deliverer(max_attempts=6, backoff_s=1.0, timeout_s=1.0, allow_insecure=False)
    failed = DeliveryError("endpoint answered 500")
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (12, 60.0)]:
        delays = [deliverer._delay(attempt, failed) for _ in range(50)]
        assert all(cap / 2 <= d <= cap for d in delays)
    assert deliverer._delay(1, DeliveryError("429", retry_after_s=7.0)) == 7.0
    assert deliverer._delay(1, DeliveryError("503", retry_after_s=9999.0)) == 60.0
