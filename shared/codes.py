"""Short codes: fixed-length base62 strings from the operating system's CSPRNG.

The length of a new short code is a setting (`LinkSettings.code_length`, `CODE_LENGTH`): callers
pass it, so there is no default here to drift from it.
"""

from __future__ import annotations

import os
import secrets
import string

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase

# Bytes 0..247 map to ALPHABET[b % 62] (248 = 4 * 62, so every character is equally likely);
# bytes 248..255 are dropped rather than folded in, which would bias the first eight characters.
_TO_BASE62 = bytes(ord(ALPHABET[b % 62]) for b in range(248)) + bytes(8)
_DROP = bytes(range(248, 256))


def mint_code(length: int) -> str:
    """A new random code of `length` characters; never sequential, never derived from anything
    guessable."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def mint_codes(count: int, length: int) -> list[str]:
    """`count` random codes at once, for bulk minting (rate: docs/operations.md): uniform base62
    from `os.urandom`, by rejection sampling of bytes. Codes may repeat with the tiny probability
    of a birthday collision; the database's primary key is what makes them unique."""
    need = count * length
    chars = b""
    while len(chars) < need:
        # 248/256 of the bytes survive; ask for a little more than the expected need.
        chunk = os.urandom((need - len(chars)) * 265 // 256 + 64)
        chars += chunk.translate(_TO_BASE62, _DROP)
    text = chars[:need].decode("ascii")
    return [text[i : i + length] for i in range(0, need, length)]
