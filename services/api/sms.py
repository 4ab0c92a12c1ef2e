"""SMS length arithmetic: which encoding a text needs, how long it is, how many segments it takes.

GSM-7 (3GPP TS 23.038, the GSM 03.38 alphabet) is used when every character is in the basic
table or its extension table; an extension character (`€ [ ] { } ^ ~ \\ |` and form feed) costs two
septets, an escape plus the character. Otherwise the message goes as UCS-2 and its length is
counted in UTF-16 code units, so a character outside the BMP (most emoji) costs two.

One segment carries 160 septets or 70 UCS-2 units. A longer message is split into parts of 153
septets or 67 units (the rest of each part is the concatenation header), and a part never ends
between the two septets of an extension character or between the two halves of a surrogate
pair: such a character moves whole to the next part, which is why packing, not a division,
decides the segment count. National language shift tables are not used (Indian operators do not
honour them for DLT traffic), so Devanagari text is UCS-2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ"  # 0x00-0x1A; 0x1B is the escape to the extension table
    "ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The 127 printable characters of the GSM 03.38 basic table (one septet each)."""
GSM7_EXTENSION = "\f^{}\\[~]|€"
"""Characters of the GSM 03.38 extension table (two septets each: escape + character)."""

SINGLE_LIMIT: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
"""Units that fit in a message of one segment."""
PART_LIMIT: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}
"""Units per part of a concatenated (multi-segment) message."""

_BASIC = frozenset(GSM7_BASIC)
_EXTENSION = frozenset(GSM7_EXTENSION)


@dataclass(frozen=True, slots=True)
class SmsLength:
    """How a text travels as SMS."""

    encoding: Encoding
    """`GSM-7` when every character is in the GSM 03.38 tables, else `UCS-2`."""
    characters: int
    """Unicode code points in the text."""
    length: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text costs."""
    segments: int
    """SMS parts needed to send the text (0 for an empty text)."""


def encoding_of(text: str) -> Encoding:
    """`GSM-7` if every character is in the basic or extension table, else `UCS-2`."""
    return "GSM-7" if all(ch in _BASIC or ch in _EXTENSION for ch in text) else "UCS-2"


def unit_cost(ch: str, encoding: Encoding) -> int:
    """What one character costs: septets for GSM-7 (1, or 2 for extension characters), UTF-16
    code units for UCS-2 (1, or 2 outside the BMP)."""
    if encoding == "GSM-7":
        return 2 if ch in _EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def split_segments(text: str, encoding: Encoding | None = None) -> list[str]:
    """The text cut into the parts it is sent as; `"".join(parts) == text`.

    One part when it fits a single message (160 septets / 70 units), else parts of at most
    153 septets / 67 units, filled greedily and never splitting a two-unit character.
    """
    enc = encoding or encoding_of(text)
    costs = [unit_cost(ch, enc) for ch in text]
    if sum(costs) <= SINGLE_LIMIT[enc]:
        return [text] if text else []
    capacity = PART_LIMIT[enc]
    parts: list[str] = []
    start = used = 0
    for i, cost in enumerate(costs):
        if used + cost > capacity:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return parts


def measure(text: str) -> SmsLength:
    """Encoding, length in units and number of segments of `text`."""
    enc = encoding_of(text)
    length = sum(unit_cost(ch, enc) for ch in text)
    if length <= SINGLE_LIMIT[enc]:
        segments = 1 if text else 0
    else:
        segments = len(split_segments(text, enc))
    return SmsLength(encoding=enc, characters=len(text), length=length, segments=segments)
