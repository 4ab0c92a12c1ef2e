from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from services.redirector.spool import Spool, decode_records, encode_record


def spool(folder: Path, *, max_bytes: int = 1 << 20, file_bytes: int = 1 << 20) -> Spool:
    return Spool(folder, max_bytes=max_bytes, file_bytes=file_bytes, fsync_ms=5)


def records(n: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(b"code%d" % i, b'{"n":%d}' % i) for i in range(start, start + n)]


async def test_records_come_back_in_order_after_rotation(tmp_path: Path) -> None:
    async with spool(tmp_path) as s:
        for key, value in records(100):
            assert s.append(key, value)
        await s.rotate()
        (path,) = s.closed_files()
        assert await s.read(path) == records(100)
        assert s.records_written == 100
        s.remove(path)
        assert (s.empty, s.size_bytes, os.listdir(tmp_path)) == (True, 0, ["spool.lock"])


async def test_files_roll_over_at_their_size_and_keep_the_order(tmp_path: Path) -> None:
    async with spool(tmp_path, file_bytes=50) as s:  # a record is 24 bytes: 3 per file
        for i in range(10):
            key, value = records(1, i)[0]
            s.append(key, value)
            await s.flush()  # one group write per record
        await s.rotate()
        files = s.closed_files()
        assert len(files) == 4
        assert files == sorted(files)
        got = [r for f in files for r in await s.read(f)]
    assert got == records(10)


async def test_the_writer_task_writes_without_being_asked(tmp_path: Path) -> None:
    async with spool(tmp_path) as s:
        s.append(b"k", b"v")
        for _ in range(200):
            if s.records_written:
                break
            await _tick()
        assert s.records_written == 1


async def test_the_size_bound_refuses_records(tmp_path: Path) -> None:
    one = len(encode_record(b"k", b"v" * 10))
    async with spool(tmp_path, max_bytes=one * 3) as s:
        assert [s.append(b"k", b"v" * 10) for _ in range(4)] == [True, True, True, False]
        assert s.size_bytes == one * 3


async def test_a_new_process_finds_the_files_of_the_last_one(tmp_path: Path) -> None:
    async with spool(tmp_path) as s:
        for key, value in records(5):
            s.append(key, value)
    # Exit flushed and closed the file: the next spool on the folder sees it, not empty.
    async with spool(tmp_path) as again:
        assert not again.empty
        (path,) = again.closed_files()
        assert await again.read(path) == records(5)
        again.append(b"k", b"v")
        await again.rotate()
        assert len(again.closed_files()) == 2
        assert again.closed_files()[0] == path


async def test_one_folder_one_process(tmp_path: Path) -> None:
    async with spool(tmp_path):
        with pytest.raises(RuntimeError, match="in use by another process"):
            await spool(tmp_path).__aenter__()


def test_a_torn_or_corrupt_tail_ends_the_file_at_the_last_whole_record() -> None:
    good = encode_record(b"a", b"1") + encode_record(b"b", b"2")
    torn = good + encode_record(b"c", b"3")[:-1]
    assert decode_records(torn) == (
        [(b"a", b"1"), (b"b", b"2")],
        len(encode_record(b"c", b"3")) - 1,
    )
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF  # the CRC no longer matches the second record
    assert decode_records(bytes(flipped)) == ([(b"a", b"1")], len(encode_record(b"b", b"2")))
    assert decode_records(b"") == ([], 0)


async def _tick() -> None:
    await asyncio.sleep(0.01)


async def test_a_failed_write_keeps_the_records_for_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.redirector.spool as spool_module

    real_write = spool_module._write_all

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    async with spool(tmp_path) as s:
        for key, value in records(3):
            s.append(key, value)
        monkeypatch.setattr(spool_module, "_write_all", disk_full)
        with pytest.raises(OSError, match="No space left"):
            await s.flush()
        assert (s.records_written, s.empty) == (0, False)
        s.append(*records(1, 3)[0])
        monkeypatch.setattr(spool_module, "_write_all", real_write)
        await s.rotate()
        (path,) = s.closed_files()
        assert await s.read(path) == records(4)


async def test_records_still_unwritable_at_close_are_counted_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.redirector.spool as spool_module

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    s = spool(tmp_path)
    async with s:
        monkeypatch.setattr(spool_module, "_write_all", disk_full)
        for key, value in records(5):
            s.append(key, value)
    assert s.records_lost == 5
