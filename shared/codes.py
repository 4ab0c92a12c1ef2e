"""Short codes: fixed-length base62 strings from the operating system's CSPRNG."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
CODE_LENGTH = 10  # 62**10 ~ 8e17: guessing a live code is hopeless


def mint_code(length: int = CODE_LENGTH) -> str:
    """A new random code; never sequential, never derived from anything guessable."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
