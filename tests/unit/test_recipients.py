"""Pseudonyms and sealed ids: deterministic per organisation, different across organisations,
and a sealed id opens only in its own row."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.recipients import PSEUDONYM_HEX, RecipientKeys

MASTER = b"m" * 43


def test_a_pseudonym_is_the_organisations_hmac_of_the_id_and_nothing_else() -> None:
    vault = RecipientKeys(MASTER).vault(7)
    p = vault.pseudonym("+919800000001")
    assert len(p) == PSEUDONYM_HEX == 32 and int(p, 16) >= 0
    assert p == RecipientKeys(MASTER).vault(7).pseudonym("+919800000001")  # stable
    # what docs/click-topic.md tells a subscriber to compute, with the key the API hands out
    mine = hmac.new(vault.pseudonym_key, b"+919800000001", hashlib.sha256).hexdigest()[:32]
    assert p == mine
    assert "9800000001" not in p


def test_organisations_and_master_keys_give_different_pseudonyms() -> None:
    one, two = RecipientKeys(MASTER).vault(1), RecipientKeys(MASTER).vault(2)
    other = RecipientKeys(b"o" * 43).vault(1)
    ids = [f"+9198000000{i:02d}" for i in range(50)]
    mine = {one.pseudonym(i) for i in ids}
    assert len(mine) == 50
    assert mine.isdisjoint(two.pseudonym(i) for i in ids)
    assert mine.isdisjoint(other.pseudonym(i) for i in ids)
    assert one.pseudonym_key != two.pseudonym_key


def test_a_sealed_id_opens_only_in_its_row_of_its_organisation() -> None:
    vault = RecipientKeys(MASTER).vault(1)
    p = vault.pseudonym("+919800000001")
    sealed = vault.seal(p, "+919800000001")
    assert b"9800000001" not in sealed
    assert vault.seal(p, "+919800000001") != sealed  # a fresh nonce each time
    assert vault.open(p, sealed) == "+919800000001"
    with pytest.raises(ValueError, match="does not open"):
        vault.open(vault.pseudonym("+919800000002"), sealed)  # moved to another row
    with pytest.raises(ValueError, match="does not open"):
        RecipientKeys(MASTER).vault(2).open(p, sealed)  # another organisation
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ValueError, match="does not open"):
        vault.open(p, tampered)
