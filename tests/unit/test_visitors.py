"""The visitor id and its signed cookie: who is one visitor, and what a forged cookie gets."""

from __future__ import annotations

from services.redirector.visitors import VisitorKeys, key_id, visitor_id

KEY = b"k" * 32
OTHER = b"o" * 32


def test_visitor_identity_strongest_first() -> None:
    keys = VisitorKeys(KEY)
    signed = keys.sign("a" * 32)
    assert visitor_id(
        recipient_id="r42", cookie=signed, ip="1.2.3.4", user_agent="UA", keys=keys
    ) == ("r:r42", None)
    assert visitor_id(
        recipient_id=None, cookie=signed, ip="1.2.3.4", user_agent="UA", keys=keys
    ) == ("v:" + "a" * 32, None)
    vid, cookie = visitor_id(
        recipient_id=None, cookie=None, ip="1.2.3.4", user_agent="UA", keys=keys
    )
    assert vid == "v:" + keys.hash("1.2.3.4", "UA")
    assert cookie == keys.sign(keys.hash("1.2.3.4", "UA"))
    # the cookie we set identifies the same visitor on the next click, from any address
    assert visitor_id(
        recipient_id=None, cookie=cookie, ip="9.9.9.9", user_agent="UA", keys=keys
    ) == (vid, None)


def test_the_cookie_names_its_key_and_carries_a_128_bit_signature() -> None:
    cookie = VisitorKeys(KEY).sign("b" * 32)
    visitor, kid, signature = cookie.split(".")
    assert (visitor, kid, len(signature)) == ("b" * 32, key_id(KEY), 32)
    assert key_id(KEY) != key_id(OTHER)


def test_forged_altered_or_foreign_cookies_fall_back_to_the_address_hash() -> None:
    keys = VisitorKeys(KEY)
    genuine = keys.sign("c" * 32)
    visitor, kid, signature = genuine.split(".")
    forged = [
        "c" * 32,  # the old, unsigned shape: any 32 hex digits used to be believed
        "<script>",
        f"{'d' * 32}.{kid}.{signature}",  # another visitor under this visitor's signature
        f"{visitor}.{kid}.{'0' * 32}",  # a made-up signature
        f"{visitor}.{kid}.{signature[:-1]}{'1' if signature[-1] != '1' else '2'}",
        VisitorKeys(OTHER).sign(visitor),  # signed with a key this redirector does not hold
        f"{visitor}.00000000.{signature}",
        genuine + ".",
        genuine.upper(),
    ]
    fallback = "v:" + keys.hash("1.2.3.4", "UA")
    for cookie in forged:
        assert keys.verify(cookie) is None, cookie
        got = visitor_id(recipient_id=None, cookie=cookie, ip="1.2.3.4", user_agent="UA", keys=keys)
        assert got == (fallback, keys.sign(fallback[2:])), cookie
    assert keys.verify(genuine) == (visitor, True)


def test_a_rotation_keeps_visitors_and_signs_their_cookies_again() -> None:
    old, new = VisitorKeys(OTHER), VisitorKeys(KEY, previous=OTHER)
    cookie = old.sign("e" * 32)
    # during the rotation: the old cookie is believed, and replaced by one the new key signed
    vid, again = visitor_id(recipient_id=None, cookie=cookie, ip=None, user_agent=None, keys=new)
    assert (vid, again) == ("v:" + "e" * 32, new.sign("e" * 32))
    assert again is not None and again.split(".")[1] == key_id(KEY)
    assert new.verify(again) == ("e" * 32, True)
    # once the previous key is dropped, a cookie it signed is worth nothing
    assert VisitorKeys(KEY).verify(cookie) is None


def test_the_address_hash_depends_on_the_key() -> None:
    assert VisitorKeys(KEY).hash("1.2.3.4", "UA") != VisitorKeys(OTHER).hash("1.2.3.4", "UA")
    assert VisitorKeys(KEY).hash("1.2.3.4", "UA") == VisitorKeys(KEY, OTHER).hash("1.2.3.4", "UA")
