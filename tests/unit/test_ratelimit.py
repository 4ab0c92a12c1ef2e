"""Who a caller is to the rate limits: the credential as authentication reads it."""

from __future__ import annotations

from services.api.auth import bearer_credential
from services.api.ratelimit import PREFIX, caller_key


def test_a_credential_is_read_as_authentication_reads_it() -> None:
    assert bearer_credential("Bearer ck_abc") == "ck_abc"
    assert bearer_credential("bearer   ck_abc  ") == "ck_abc"
    assert bearer_credential("BEARER ck_abc") == "ck_abc"
    assert bearer_credential("Basic ck_abc") is None
    assert bearer_credential("Bearer   ") is None
    assert bearer_credential("") is None


def test_spellings_of_one_key_are_one_caller() -> None:
    # One more space once gave a fresh bucket per request: the limit did not hold.
    spellings = ["Bearer ck_abc", "Bearer  ck_abc", "bearer ck_abc ", "BEARER\u0020\u0020ck_abc"]
    keys = {caller_key(bearer_credential(s), "203.0.113.9") for s in spellings}
    assert len(keys) == 1
    (key,) = keys
    assert key.startswith(PREFIX + "key:") and "ck_abc" not in key


def test_without_a_credential_the_address_is_the_caller() -> None:
    assert caller_key(None, "203.0.113.9") == PREFIX + "addr:203.0.113.9"
    assert caller_key(bearer_credential("Bearer ck_a"), "x") != caller_key(
        bearer_credential("Bearer ck_b"), "x"
    )
