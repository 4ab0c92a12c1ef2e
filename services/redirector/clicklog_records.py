"""The click log's record format: each record on disk is

    !4sIII header: magic, key length, value length, CRC-32 of (the two lengths, key, value)
    then the key, then the value

The magic holds the byte 0xC1, which no UTF-8 text contains: no JSON value and no base62 key can
fake one. A reader that meets a record cut short or whose CRC does not match skips to the next
magic that starts a valid record, so a bad record never hides the records after it.
"""

from __future__ import annotations

import struct
import zlib

MAGIC = b"\xc1\x1c\x0c\x01"
_HEADER = struct.Struct("!4sIII")
_LENGTHS = struct.Struct("!II")
HEADER_BYTES = _HEADER.size
MAX_RECORD_BYTES = 1024 * 1024
"""Largest key + value accepted; a header claiming more is corrupt."""

Record = tuple[bytes, bytes]


def encode_record(key: bytes, value: bytes) -> bytes:
    """One record as stored on disk."""
    lengths = _LENGTHS.pack(len(key), len(value))
    crc = zlib.crc32(value, zlib.crc32(key, zlib.crc32(lengths)))
    return MAGIC + lengths + struct.pack("!I", crc) + key + value


def decode_records(data: bytes, *, final: bool) -> tuple[list[Record], int, int]:
    """The records in `data`: (records, bytes consumed, bytes skipped as unreadable).

    A bad stretch (a torn or corrupt record, garbage) is skipped up to the next magic that
    starts a valid record. With `final` false more bytes may follow `data`: a record cut by the
    end of `data` is left for the next read (not consumed). With `final` true, `data` ends
    the file and whatever cannot be read is skipped.
    """
    records: list[Record] = []
    view = memoryview(data)
    pos, end, skipped = 0, len(data), 0
    while pos < end:
        if pos + HEADER_BYTES <= end:
            magic, key_len, value_len, crc = _HEADER.unpack_from(data, pos)
            size = key_len + value_len
            if magic == MAGIC and size <= MAX_RECORD_BYTES:
                start = pos + HEADER_BYTES
                stop = start + size
                if stop > end and not final:
                    break  # the rest of this record comes with the next read
                lengths = zlib.crc32(view[pos + 4 : start - 4])
                if stop <= end and zlib.crc32(view[start:stop], lengths) == crc:
                    records.append((data[start : start + key_len], data[start + key_len : stop]))
                    pos = stop
                    continue
        elif not final and data.startswith(MAGIC[: end - pos], pos):
            break  # a header cut by the end of `data`
        # A bad record: resynchronise at the next magic.
        found = data.find(MAGIC, pos + 1)
        if found < 0:
            # The last bytes may be the start of a magic the next read completes.
            found = end if final else max(pos, end - len(MAGIC) + 1)
            if found == pos:
                break
        skipped += found - pos
        pos = found
    return records, pos, skipped
