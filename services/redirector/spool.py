"""The disk spool: where click events wait, durably, while Kafka cannot take them.

One folder per redirector process (an exclusive `flock` on `spool.lock` makes sharing an error).
Files `spool-<seq>.log` are append-only and numbered in write order; each record is

    !III header: key length, value length, CRC-32 of key + value   then key, then value

`append()` only buffers in memory (the event loop never touches the disk); a writer task writes
and fsyncs the buffer every `fsync_ms` in a worker thread (group commit), so a crash loses at
most that window. `rotate()` closes the file being written so that it can be replayed;
`remove()` deletes a replayed file. A torn or corrupt tail (a crash mid-write) ends a file's
reading at the last whole record. The total size, buffer included, is bounded by `max_bytes`:
past it `append()` refuses and the caller counts the event as dropped. So it does when writes
fail (disk full) and `PENDING_MAX_BYTES` wait in memory.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import zlib
from contextlib import suppress
from pathlib import Path

from shared.service import cancel

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!III")
PENDING_MAX_BYTES = 64 * 1024 * 1024
"""Bytes `append()` may buffer in memory while writes fail (a full or read-only disk)."""
_PREFIX = "spool-"
_SUFFIX = ".log"

Record = tuple[bytes, bytes]


def encode_record(key: bytes, value: bytes) -> bytes:
    """One record as stored on disk."""
    return _HEADER.pack(len(key), len(value), zlib.crc32(value, zlib.crc32(key))) + key + value


def decode_records(data: bytes) -> tuple[list[Record], int]:
    """The whole records at the start of `data`, and how many trailing bytes were unreadable."""
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


class Spool:
    """Append-only record files in `folder`; see the module docstring. Use `async with`."""

    def __init__(self, folder: Path, *, max_bytes: int, file_bytes: int, fsync_ms: int) -> None:
        self.folder = folder
        self._max_bytes = max_bytes
        self._file_bytes = file_bytes
        self._fsync_s = fsync_ms / 1000
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._active: Path | None = None
        self._active_bytes = 0
        self._closed_files: list[Path] = []
        self._closed_bytes = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_records = 0
        self._next_seq = 0
        self._io = asyncio.Lock()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.records_written = 0
        self.records_lost = 0
        """Records still buffered when the spool closed and the last write failed."""

    async def __aenter__(self) -> Spool:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.folder / "spool.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RuntimeError(
                f"spool folder {self.folder} is in use by another process: give each redirector"
                " process its own SPOOL_DIR"
            ) from None
        self._lock_fd = lock_fd
        found = sorted(self.folder.glob(f"{_PREFIX}*{_SUFFIX}"))
        self._closed_files = found  # left by an earlier process: replay them first
        self._closed_bytes = sum(p.stat().st_size for p in found)
        self._next_seq = max((_seq(p) for p in found), default=0) + 1
        if found:
            log.warning(
                "spool files found at start-up, they will be replayed",
                extra={"files": len(found), "bytes": self._closed_bytes},
            )
        self._writer = asyncio.create_task(self._write_loop(), name="spool-writer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            await cancel(self._writer)
            self._writer = None
        try:
            await self.flush()
        except OSError as exc:
            self.records_lost += self._pending_records
            log.error(
                "spool could not write its last records, they are lost",
                extra={"records": self._pending_records, "error": repr(exc)},
            )
        async with self._io:
            self._close_active()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def size_bytes(self) -> int:
        """Bytes on disk plus bytes waiting to be written."""
        return self._closed_bytes + self._active_bytes + self._pending_bytes

    @property
    def empty(self) -> bool:
        """Nothing buffered, nothing written that has not been replayed and removed."""
        return not self._pending and not self._closed_files and self._active_bytes == 0

    def append(self, key: bytes, value: bytes) -> bool:
        """Buffer one record for the next group write; False if the spool is full."""
        record = encode_record(key, value)
        size = len(record)
        if (
            self.size_bytes + size > self._max_bytes
            or self._pending_bytes + size > PENDING_MAX_BYTES
        ):
            return False
        self._pending.append(record)
        self._pending_bytes += len(record)
        self._pending_records += 1
        self._wake.set()
        return True

    async def flush(self) -> None:
        """Write and fsync what is buffered (in a worker thread)."""
        async with self._io:
            if not self._pending:
                return
            chunk, count = b"".join(self._pending), self._pending_records
            self._pending, self._pending_bytes, self._pending_records = [], 0, 0
            if self._fd is None or self._active_bytes >= self._file_bytes:
                self._close_active()
                self._open_active()
            assert self._fd is not None
            try:
                await asyncio.to_thread(_write_all, self._fd, chunk)
            except OSError:
                # Keep the records for the next try; meanwhile the size bound refuses new ones.
                self._pending.insert(0, chunk)
                self._pending_bytes += len(chunk)
                self._pending_records += count
                raise
            self._active_bytes += len(chunk)
            self.records_written += count

    async def rotate(self) -> None:
        """Flush, then close the file being written so that `closed_files()` includes it."""
        await self.flush()
        async with self._io:
            self._close_active()

    def closed_files(self) -> list[Path]:
        """Files no longer written to, oldest first: the ones to replay."""
        return list(self._closed_files)

    async def read(self, path: Path) -> list[Record]:
        """Every whole record of a closed file, in order (a torn tail is logged and skipped)."""
        data = await asyncio.to_thread(path.read_bytes)
        records, torn = decode_records(data)
        if torn:
            log.error(
                "spool file has an unreadable tail, skipped",
                extra={"file": str(path), "bytes": torn, "records": len(records)},
            )
        return records

    def remove(self, path: Path) -> None:
        """Delete a closed file whose records Kafka has acknowledged."""
        with suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            self._closed_bytes -= size
        self._closed_files.remove(path)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._fsync_s)  # gather a group for one fsync
            self._wake.clear()
            try:
                await self.flush()
            except OSError as exc:
                # The folder is unwritable or the disk is full: retry, the size bound holds.
                log.error("spool write failed, retrying", extra={"error": repr(exc)})
                self._wake.set()
                await asyncio.sleep(1.0)

    def _open_active(self) -> None:
        path = self.folder / f"{_PREFIX}{self._next_seq:012d}{_SUFFIX}"
        self._next_seq += 1
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._active, self._active_bytes = path, 0
        _fsync_dir(self.folder)

    def _close_active(self) -> None:
        if self._fd is None or self._active is None:
            return
        os.close(self._fd)
        if self._active_bytes:
            self._closed_files.append(self._active)
            self._closed_bytes += self._active_bytes
        else:
            with suppress(FileNotFoundError):
                self._active.unlink()
        self._fd, self._active, self._active_bytes = None, None, 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)


def _fsync_dir(folder: Path) -> None:
    # A new file's directory entry must be durable too, or a crash can lose the whole file.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seq(path: Path) -> int:
    try:
        return int(path.name[len(_PREFIX) : -len(_SUFFIX)])
    except ValueError:
        return 0
