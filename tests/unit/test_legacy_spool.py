"""An older redirector's outage spool (`spool-<seq>.log`) moved into the click log at start."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from services.redirector.clicklog_records import encode_record
from services.redirector.legacy_spool import adopt, decode_spool
from tests.unit.test_clicklog import clicklog, read_all, records


def old_record(key: bytes, value: bytes) -> bytes:
    """A record as the spool of c0c54a4 wrote it."""
    return (
        struct.pack("!III", len(key), len(value), zlib.crc32(value, zlib.crc32(key))) + key + value
    )


def write_spool(folder: Path, seq: int, data: bytes) -> Path:
    path = folder / f"spool-{seq:012d}.log"
    path.write_bytes(data)
    return path


def spool_names(folder: Path) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.startswith("spool-"))


async def test_old_spool_files_are_shipped_first_in_order_then_deleted(tmp_path: Path) -> None:
    old = records(25)
    write_spool(tmp_path, 2, b"".join(old_record(*r) for r in old[10:]))
    # The older file ends in a torn record (a crash in the middle of a write).
    torn = old_record(b"torn", b'{"n":-1}')[:-3]
    write_spool(tmp_path, 1, b"".join(old_record(*r) for r in old[:10]) + torn)
    write_spool(tmp_path, 3, b"")
    (tmp_path / "spool.lock").write_bytes(b"")
    async with clicklog(tmp_path) as log:
        assert await adopt(log) == 25
        assert spool_names(tmp_path) == []
        for key, value in records(3, start=100):
            assert log.append(encode_record(key, value))
        got, _ = await read_all(log)
    assert got == old + records(3, start=100)


async def test_a_full_click_log_leaves_the_old_files_for_the_next_start(tmp_path: Path) -> None:
    one = len(old_record(*records(1)[0]))
    write_spool(tmp_path, 1, b"".join(old_record(*r) for r in records(2)))
    write_spool(tmp_path, 2, b"".join(old_record(*r) for r in records(40, start=2)))
    async with clicklog(tmp_path, max_bytes=one * 20) as log:
        assert await adopt(log) == 2  # the second file does not fit: it waits, whole
        assert spool_names(tmp_path) == ["spool-000000000002.log"]
        got, _ = await read_all(log)
    assert got == records(2)


def test_the_old_format_reads_to_its_last_whole_record() -> None:
    data = old_record(b"a", b"1") + old_record(b"b", b"2")
    assert decode_spool(data) == ([(b"a", b"1"), (b"b", b"2")], 0)
    assert decode_spool(data[:-1]) == ([(b"a", b"1")], len(old_record(b"b", b"2")) - 1)
    corrupt = data[:-1] + b"3"
    assert decode_spool(corrupt) == ([(b"a", b"1")], len(old_record(b"b", b"2")))
