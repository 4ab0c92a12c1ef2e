"""Events an older redirector left in its outage spool, moved into the click log at start.

Before the click log (up to commit c0c54a4), a redirector wrote events to disk only while Kafka
was down: files `spool-<seq>.log` in the same `SPOOL_DIR`, each record a `!III` header (key
length, value length, CRC-32 of key and value), then the key and the value. A redirector
upgraded during an outage would otherwise leave those answered clicks on disk forever.

At start, before anything new is logged, every such file is read in order, its whole records
are appended to the click log (in one write a file), the log is fsynced, and only then is the
file deleted: a crash in between appends the file again at the next start (the same events
twice on the topic, counted once by `event_id`). A torn tail (a crash in the middle of an
old write) ends a file's reading at its last whole record, as the old reader did.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

from services.redirector.clicklog import ClickLog
from services.redirector.clicklog_records import Record, encode_record

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!III")
_PREFIX = "spool-"
_SUFFIX = ".log"


def decode_spool(data: bytes) -> tuple[list[Record], int]:
    """The whole records at the start of an old spool file, and the unreadable bytes after."""
    records: list[Record] = []
    pos, end = 0, len(data)
    while pos + _HEADER.size <= end:
        key_len, value_len, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        stop = start + key_len + value_len
        if stop > end:
            break
        key, value = data[start : start + key_len], data[start + key_len : stop]
        if zlib.crc32(value, zlib.crc32(key)) != crc:
            break
        records.append((key, value))
        pos = stop
    return records, end - pos


def spool_files(folder: Path) -> list[Path]:
    """The old spool files in `folder`, oldest first."""

    def seq(path: Path) -> int:
        digits = path.name[len(_PREFIX) : -len(_SUFFIX)]
        return int(digits) if digits.isdigit() else -1

    found = [p for p in folder.glob(f"{_PREFIX}*{_SUFFIX}") if seq(p) >= 0]
    return sorted(found, key=seq)


async def adopt(clicks: ClickLog) -> int:
    """Move the old spool files of `clicks.folder` into `clicks` (open); the events moved.

    A file whose records do not fit the log (it is full) is left in place for the next start,
    and so is every file after it (the order holds).
    """
    moved = 0
    for path in spool_files(clicks.folder):
        records, unreadable = decode_spool(path.read_bytes())
        if records:
            data = b"".join(encode_record(key, value) for key, value in records)
            if not clicks.append(data, len(records)):
                log.error(
                    "old spool file left for the next start: the click log is full",
                    extra={"file": path.name, "events": len(records)},
                )
                break
            if not await clicks.flush():
                log.error(
                    "old spool file left for the next start: the click log is not on disk",
                    extra={"file": path.name, "events": len(records)},
                )
                break
        if unreadable:
            log.error(
                "old spool file ends in unreadable bytes, skipped",
                extra={"file": path.name, "bytes": unreadable},
            )
        os.unlink(path)
        moved += len(records)
        log.warning(
            "events of an old spool file moved into the click log",
            extra={"file": path.name, "events": len(records)},
        )
    return moved
