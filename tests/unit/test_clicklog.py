"""The click log on a real folder: order, rotation, checkpoints, bounds, torn writes."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import services.redirector.clicklog as clicklog_module
from services.redirector.clicklog import ClickLog, Position
from services.redirector.clicklog_records import Record, decode_records, encode_record


def clicklog(folder: Path, *, max_bytes: int = 1 << 20, file_bytes: int = 1 << 20) -> ClickLog:
    return ClickLog(folder, max_bytes=max_bytes, file_bytes=file_bytes, fsync_ms=5)


def records(n: int, start: int = 0) -> list[Record]:
    return [(b"code%d" % i, b'{"n":%d}' % i) for i in range(start, start + n)]


async def read_all(log: ClickLog, at: Position | None = None) -> tuple[list[Record], Position]:
    """Every record from `at` (default: the checkpoint) to the end, as the shipper reads them."""
    at = log.shipped if at is None else at
    got: list[Record] = []
    while True:
        chunk, after = await log.read(at, max_bytes=64)  # small reads: records cross them
        got += chunk
        if after == at:
            return got, at
        at = after


def is_log_file(fd: int) -> bool:
    """Whether `fd` is open on a click log file (the fakes below break only those writes)."""
    return "/clicks-" in os.readlink(f"/proc/self/fd/{fd}")


def log_files(folder: Path) -> list[str]:
    return sorted(p for p in os.listdir(folder) if p.startswith("clicks-"))


async def test_an_appended_record_is_in_the_file_before_append_returns(tmp_path: Path) -> None:
    async with clicklog(tmp_path) as log:
        assert log.append(encode_record(b"k", b"v"))
        (name,) = log_files(tmp_path)
        # No await in between: the bytes are in the kernel already (a kill -9 keeps them).
        assert (tmp_path / name).read_bytes() == encode_record(b"k", b"v")


async def test_records_come_back_in_order_across_files(tmp_path: Path) -> None:
    one = len(encode_record(*records(1)[0]))
    async with clicklog(tmp_path, file_bytes=one * 3) as log:
        for key, value in records(10):
            assert log.append(encode_record(key, value))
        assert len(log_files(tmp_path)) == 4  # 3 + 3 + 3 + 1
        got, end = await read_all(log)
        assert got == records(10)
        assert end == log.end()


async def test_a_checkpoint_deletes_the_shipped_files_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    one = len(encode_record(*records(1)[0]))
    async with clicklog(tmp_path, file_bytes=one * 3) as log:
        for key, value in records(7):
            log.append(encode_record(key, value))
        part, at = await log.read(log.shipped, max_bytes=one * 3)
        assert part == records(3)
        part, at = await log.read(at, max_bytes=one * 2)
        assert part == records(2, 3)
        log.checkpoint(at)  # in the second file: the first is deleted
        assert len(log_files(tmp_path)) == 2
        assert log.unshipped_bytes == one * 2
    async with clicklog(tmp_path, file_bytes=one * 3) as again:
        assert again.shipped == at
        again.append(encode_record(*records(1, 7)[0]))
        got, end = await read_all(again)
        assert got == records(3, 5)
        again.checkpoint(end)
        assert again.unshipped_bytes == 0
        assert log_files(tmp_path) == [again._path(end.seq).name]  # only the active one


async def test_the_size_bound_refuses_records(tmp_path: Path) -> None:
    one = len(encode_record(b"k", b"v" * 10))
    async with clicklog(tmp_path, max_bytes=one * 3) as log:
        record = encode_record(b"k", b"v" * 10)
        assert [log.append(record) for _ in range(4)] == [True, True, True, False]
        assert log.size_bytes == one * 3


async def test_one_folder_one_process(tmp_path: Path) -> None:
    async with clicklog(tmp_path):
        with pytest.raises(RuntimeError, match="in use by another process"):
            await clicklog(tmp_path).__aenter__()


def test_a_bad_record_does_not_hide_the_records_after_it() -> None:
    a, b, c = (encode_record(k, v) for k, v in records(3))
    torn = a + b[: len(b) // 2] + c  # a write cut short, then the next record
    assert decode_records(torn, final=True) == (
        [records(3)[0], records(3)[2]],
        len(torn),
        len(b) // 2,
    )
    flipped = bytearray(a + b + c)
    flipped[len(a) + 5] ^= 0xFF  # b's length no longer matches its CRC
    assert decode_records(bytes(flipped), final=True) == (
        [records(3)[0], records(3)[2]],
        len(flipped),
        len(b),
    )
    garbage = b"\x00" * 37 + a + b"\xff" * 5
    assert decode_records(garbage, final=True) == ([records(1)[0]], len(garbage), 42)
    assert decode_records(b"", final=True) == ([], 0, 0)


def test_a_record_cut_by_the_end_of_a_read_waits_for_the_next_one() -> None:
    a, b = (encode_record(k, v) for k, v in records(2))
    for cut in range(1, len(b)):
        assert decode_records(a + b[:cut], final=False) == ([records(1)[0]], len(a), 0)


def test_random_garbage_between_records_loses_no_whole_record() -> None:
    rng = random.Random(1913)
    print("seed 1913")
    data, want = b"", []
    for i in range(300):
        key, value = b"c%d" % i, b'{"n":%d,"u":"caf\xc3\xa9"}' % i
        if rng.random() < 0.2:
            data += rng.randbytes(rng.randrange(1, 40)).replace(b"\xc1", b"\x00")
        data += encode_record(key, value)
        want.append((key, value))
    got, consumed, skipped = decode_records(data, final=True)
    assert (got, consumed) == (want, len(data))
    assert skipped == len(data) - sum(len(encode_record(k, v)) for k, v in want)


async def test_a_torn_write_on_a_full_disk_is_cut_off_and_written_again_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    full = True

    def disk_full(fd: int, data: bytes) -> int:
        if full and is_log_file(fd):  # the disk takes half of the record, then refuses
            real_write(fd, data[: len(data) // 2])
            return len(data) // 2
        return real_write(fd, data)

    async with clicklog(tmp_path) as log:
        for key, value in records(3):
            log.append(encode_record(key, value))
        monkeypatch.setattr(clicklog_module.os, "write", disk_full)
        for key, value in records(4, 3):  # accepted, kept in memory in order
            assert log.append(encode_record(key, value))
        assert log.torn_writes == 1
        got, _ = await read_all(log)
        assert got == records(3)  # the torn half was cut off again
        full = False
        await log._sync()  # the sync task writes what waited, before anything newer
        log.append(encode_record(*records(1, 7)[0]))
        got, _ = await read_all(log)
        assert got == records(8)
        assert log.skipped_bytes == 0


async def test_a_torn_write_that_cannot_be_cut_off_loses_no_record_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = 0

    def torn_once(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += is_log_file(fd)
        if calls == 1 and is_log_file(fd):
            real_write(fd, data[:5])
            return 5
        return real_write(fd, data)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    async with clicklog(tmp_path) as log:
        log.append(encode_record(*records(1)[0]))
        monkeypatch.setattr(clicklog_module.os, "write", torn_once)
        monkeypatch.setattr(clicklog_module.os, "ftruncate", no_truncate)
        log.append(encode_record(*records(1, 1)[0]))  # torn: 5 bytes stay, the file is closed
        await log._sync()  # written again, to the next file
        for key, value in records(3, 2):
            log.append(encode_record(key, value))
        got, _ = await read_all(log)
    assert got == records(5)
    assert log.skipped_bytes == 5


async def test_records_still_unwritable_at_close_are_counted_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def disk_full(fd: int, data: bytes) -> int:
        if is_log_file(fd):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    log = clicklog(tmp_path)
    async with log:
        monkeypatch.setattr(clicklog_module.os, "write", disk_full)
        for key, value in records(5):
            assert log.append(encode_record(key, value))
    assert log.records_lost == 5


async def test_a_file_left_with_a_torn_tail_is_read_to_its_last_whole_record(
    tmp_path: Path,
) -> None:
    async with clicklog(tmp_path) as log:
        for key, value in records(3):
            log.append(encode_record(key, value))
        path = log._path(log.end().seq)
    with path.open("ab") as f:  # a process killed in the middle of a write
        f.write(encode_record(b"torn", b"x" * 50)[:20])
    async with clicklog(tmp_path) as again:
        # a new file: the torn one is never appended to
        again.append(encode_record(*records(1, 3)[0]))
        got, _ = await read_all(again)
    assert got == records(4)
    assert again.skipped_bytes == 20
