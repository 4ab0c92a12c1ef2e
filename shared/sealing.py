"""Secrets at rest: values sealed with AES-256-GCM under keys derived from a master key.

`derive(master, purpose)` gives the 256-bit key of one purpose (HKDF-SHA256 with the purpose as
its info: one master key serves many purposes, no two share a key). A `Sealer` encrypts a value
with a random 96-bit nonce and authenticates where it belongs (`bound`: the row it is stored in),
so a sealed value copied to another row does not open. A sealed value is nonce || ciphertext+tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def derive(master: bytes, purpose: str) -> bytes:
    """The 256-bit key of `purpose` (e.g. `recipient seal v1 org 7`) under `master`."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        master
    )


class Sealer:
    """Seals and opens values with one key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, value: bytes, bound: bytes) -> bytes:
        """`value` encrypted, bound to `bound` (where it is stored)."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value, bound)

    def open(self, sealed: bytes, bound: bytes) -> bytes:
        """The value sealed for `bound`; `ValueError` if it was sealed elsewhere, altered, or
        with another key."""
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], bound)
        except (InvalidTag, ValueError):
            raise ValueError("a sealed value does not open with this key and row") from None
