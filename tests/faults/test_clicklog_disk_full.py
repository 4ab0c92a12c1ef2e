"""A real full disk under the click log: a small tmpfs cuts a write short (the kernel's own torn
write), and no record, the torn one or any after it, is lost once space comes back.

Needs root to mount the tmpfs (it is unmounted at the end); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.redirector.clicklog import ClickLog, Position, Record
from services.redirector.clicklog_records import encode_record

SIZE = 64 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def record(i: int) -> Record:
    return b"code%06d" % i, b'{"n":%d,"pad":"%s"}' % (i, b"x" * 300)


async def read_all(log: ClickLog) -> list[Record]:
    at, got = Position(0, 0), []
    while True:
        chunk, after = await log.read(at)
        got += chunk
        if after == at:
            return got
        at = after


async def test_a_disk_full_torn_write_loses_no_record_after_the_tear(small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"f" * (SIZE // 2))
    folder = small_disk / "log"
    async with ClickLog(folder, max_bytes=1 << 20, file_bytes=1 << 20, fsync_ms=5) as log:
        n = 0
        while not log.torn_writes:  # until the disk is full (bounded: 64 KiB of it)
            assert log.append(encode_record(*record(n)))
            n += 1
            assert n < 1000
        for _ in range(20):  # more clicks while the disk is full: kept in memory, in order
            assert log.append(encode_record(*record(n)))
            n += 1
        on_disk = sum(p.stat().st_size for p in folder.glob("clicks-*"))
        filler.unlink()  # space comes back
        for _ in range(200):  # the sync task writes what waited (bounded: 2 s)
            if not log._pending:
                break
            await asyncio.sleep(0.01)
        for _ in range(20):
            assert log.append(encode_record(*record(n)))
            n += 1
        got = await read_all(log)
    print(f"disk full after {on_disk} bytes of log, {log.torn_writes} torn writes, {n} records")
    assert got == [record(i) for i in range(n)]
    assert (log.skipped_bytes, log.records_lost) == (0, 0)
    async with ClickLog(folder, max_bytes=1 << 20, file_bytes=1 << 20, fsync_ms=5) as again:
        assert await read_all(again) == [record(i) for i in range(n)]  # as a restart reads it
