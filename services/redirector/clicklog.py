"""The click log: every click event of one redirector process, on local disk, before its 302.

    append() ── os.write to the active file ──► the handler returns, the 302 is written
                 (the kernel has the record: a kill -9 of the process cannot lose it)
    sync task ── fsync in groups every `fsync_ms` (a worker thread): a machine crash loses at
                 most that window
    read(at) ─── the shipper reads the files in order from its checkpoint, sends, and stores
                 the new checkpoint with `checkpoint(at)`; files wholly before it are deleted

One folder per process (an exclusive `flock` on `clicks.lock`). Files `clicks-<seq>.log` are
append-only and numbered in write order; a process opens a new file at start and every
`file_bytes`. Each record is a header with a CRC, then the key and the value (`clicklog_records`).

Torn writes. A write the disk cut short (a full disk) leaves part of a record in the file. The
writer cuts it off again (`ftruncate`; if even that fails, it closes the file and opens another)
and keeps the record in memory, written again by the sync task before any newer record, so the
order holds. The reader does not trust the writer either: at a record that is cut short or whose
CRC does not match, it skips to the next magic that starts a valid record, so a bad record never
hides the records after it. The magic holds the byte 0xC1, which no UTF-8 text contains: no JSON
value and no base62 key can fake one.

The checkpoint (`checkpoint`, text `<seq> <offset>`) is where the shipper is: everything before
it is on Kafka. It is replaced with a rename, not fsynced: after a machine crash an older
checkpoint only makes the shipper send some events again, and the counter deduplicates them.

The size of the folder (files plus records waiting in memory) is bounded by `max_bytes`: past it
`append()` refuses and the caller counts the click as dropped. Records waiting in memory while
writes fail are bounded by `PENDING_MAX_BYTES` as well.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

from services.redirector.clicklog_records import (
    MAX_RECORD_BYTES,
    Record,
    decode_records,
)

log = logging.getLogger(__name__)

PENDING_MAX_BYTES = 64 * 1024 * 1024
"""Bytes `append()` may keep in memory while writes fail (a full or read-only disk)."""
READ_BYTES = 1024 * 1024
"""Most bytes one `read()` takes from a file (about 2,500 click events)."""
_PREFIX = "clicks-"
_SUFFIX = ".log"
_CHECKPOINT = "checkpoint"


class Position(NamedTuple):
    """A place in the log: a file's sequence number and a byte offset in it."""

    seq: int
    offset: int


class ClickLog:
    """The append-only click log of one process in `folder`; see the module docstring.

    Use `async with`. `append()` is synchronous and cheap (one `os.write`); the event loop
    never waits for an fsync.
    """

    def __init__(self, folder: Path, *, max_bytes: int, file_bytes: int, fsync_ms: int) -> None:
        self.folder = folder
        self._max_bytes = max_bytes
        self._file_bytes = file_bytes
        self._fsync_s = fsync_ms / 1000
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seq = 0  # the active file's
        self._active_bytes = 0  # whole records written to the active file
        self._files: dict[int, int] = {}  # closed files: seq -> bytes on disk
        self._disk_bytes = 0  # closed files and the active one
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_records = 0
        self._dirty = False
        self._new_entry = False  # a file was created: fsync the folder
        self._to_close: list[int] = []  # rotated fds, closed by the sync task after an fsync
        self._stopping = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None
        self.shipped = Position(0, 0)
        """The checkpoint: everything before it is on Kafka."""
        self.records_lost = 0
        """Records still in memory when the log closed and the last write failed."""
        self.torn_writes = 0
        self.skipped_bytes = 0
        """Unreadable bytes the reader skipped (torn or corrupt records)."""

    # -- life ------------------------------------------------------------------------------------

    async def __aenter__(self) -> ClickLog:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.folder / "clicks.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RuntimeError(
                f"click log folder {self.folder} is in use by another process: give each"
                " redirector process its own SPOOL_DIR"
            ) from None
        self._lock_fd = lock_fd
        for path in self.folder.glob(f"{_PREFIX}*{_SUFFIX}"):
            seq = _seq(path)
            if seq:
                self._files[seq] = path.stat().st_size
        self._disk_bytes = sum(self._files.values())
        self.shipped = self._read_checkpoint()
        for seq in [s for s in self._files if s < self.shipped.seq]:
            self._delete(seq)  # shipped, but the last run stopped before deleting it
        if self.unshipped_bytes:
            log.warning(
                "click log has events not yet on Kafka, they will be shipped",
                extra={"files": len(self._files), "bytes": self.unshipped_bytes},
            )
        # Always a new file, after every file and after the checkpoint's: a file of an earlier
        # run may end in a torn record, and the checkpoint may name a file that is gone.
        self._seq = max(max(self._files, default=0), self.shipped.seq) + 1
        self._open_active()
        self._syncer = asyncio.create_task(self._sync_loop(), name="click-log-sync")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._syncer is not None:
            await self._syncer  # it ends after one last sync
            self._syncer = None
        if self._pending_records:
            self.records_lost += self._pending_records
            log.error(
                "click log could not write its last records, they are lost",
                extra={"records": self._pending_records},
            )
        for fd in [*self._to_close, *([] if self._fd is None else [self._fd])]:
            os.close(fd)
        self._to_close, self._fd = [], None
        if (not self._active_bytes or self.shipped >= self.end()) and not self._pending:
            # Nothing was written to it, or all of it is on Kafka: leave no file behind (the
            # checkpoint may name it still; the next start begins after it).
            with suppress(FileNotFoundError):
                self._path(self._seq).unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------------------------

    def append(self, data: bytes, records: int = 1) -> bool:
        """Write `records` records already encoded (`encode_record`, joined) with one write,
        into the kernel, not yet fsynced: all of them, or none if the log is full (False)."""
        size = len(data)
        if self._disk_bytes + self._pending_bytes + size > self._max_bytes:
            return False
        if self._pending:  # writes are failing: keep the order, the sync task retries
            if self._pending_bytes + size > PENDING_MAX_BYTES:
                return False
            self._keep(data, records)
            return True
        if self._active_bytes and self._active_bytes + size > self._file_bytes:
            self._rotate()
        if not self._write(data):
            self._keep(data, records)
        return True

    async def flush(self) -> bool:
        """Write what waits in memory and fsync now; True if every record appended so far is
        on disk."""
        await self._sync()
        return not self._pending and not self._dirty

    def end(self) -> Position:
        """Where the next record will be written."""
        return Position(self._seq, self._active_bytes)

    @property
    def size_bytes(self) -> int:
        """Bytes on disk plus bytes waiting in memory."""
        return self._disk_bytes + self._pending_bytes

    @property
    def unshipped_bytes(self) -> int:
        """Bytes written (or waiting to be) past the checkpoint."""
        at = self.shipped
        total = self._pending_bytes
        for seq, size in self._files.items():
            if seq >= at.seq:
                total += size - (at.offset if seq == at.seq else 0)
        if self._seq >= at.seq and self._fd is not None:
            total += self._active_bytes - (at.offset if self._seq == at.seq else 0)
        return max(total, 0)

    def _write(self, data: bytes) -> bool:
        fd = self._fd
        if fd is None:
            try:
                self._open_active()
            except OSError as exc:
                log.error("click log cannot open a file", extra={"error": repr(exc)})
                return False
            fd = self._fd
            assert fd is not None
        try:
            written = os.write(fd, data)
        except OSError as exc:
            written, error = 0, exc
        else:
            if written == len(data):
                self._active_bytes += written
                self._disk_bytes += written
                self._dirty = True
                return True
            error = OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
        self.torn_writes += 1
        log.error("click log write failed", extra={"error": repr(error), "written": written})
        if written:
            try:
                os.ftruncate(fd, self._active_bytes)  # cut the torn record off again
            except OSError:
                self._rotate()  # keep the torn bytes out of the way; the reader skips them
                self._disk_bytes += written
                self._files[self._seq - 1] += written
        return False

    def _keep(self, data: bytes, records: int) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        self._pending_records += records

    def _retry_pending(self) -> None:
        chunk, count = b"".join(self._pending), self._pending_records
        self._pending, self._pending_bytes, self._pending_records = [], 0, 0
        if self._active_bytes and self._active_bytes + len(chunk) > self._file_bytes:
            self._rotate()
        if not self._write(chunk):
            self._keep(chunk, count)

    def _open_active(self) -> None:
        path = self._path(self._seq)
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._active_bytes = 0
        self._new_entry = True

    def _rotate(self) -> None:
        """Close the active file (the sync task fsyncs and closes its fd) and open the next."""
        if self._fd is not None:
            self._to_close.append(self._fd)
            self._files[self._seq] = self._active_bytes
            self._fd = None
        self._seq += 1
        self._active_bytes = 0
        try:
            self._open_active()
        except OSError as exc:
            log.error("click log cannot open a file", extra={"error": repr(exc)})

    async def _sync_loop(self) -> None:
        stopping = self._stopping
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._fsync_s)
            await self._sync()

    async def _sync(self) -> None:
        if self._pending:
            self._retry_pending()
        closing, self._to_close = self._to_close, []
        fd = self._fd if self._dirty else None
        folder = self._new_entry
        self._dirty = self._new_entry = False
        if fd is None and not closing and not folder:
            return
        try:
            # The active fd is not closed meanwhile: only __aexit__ closes it, after this task.
            await asyncio.to_thread(_sync, fd, closing, self.folder if folder else None)
        except OSError as exc:
            log.error("click log fsync failed", extra={"error": repr(exc)})
            self._dirty = True

    # -- reading and shipping --------------------------------------------------------------------

    async def read(
        self, at: Position, max_bytes: int = READ_BYTES
    ) -> tuple[list[Record], Position]:
        """The records from `at` on (at most about `max_bytes`), and the position after them.

        Moves on to the next file at the end of a closed one; skips unreadable stretches.
        """
        seq, offset = self._next_file(at)
        if seq == self._seq:
            end, final = self._active_bytes, False
        else:
            end, final = self._files[seq], True
        if offset >= end:
            return [], Position(seq, offset)
        length = min(end - offset, max_bytes)
        data = await asyncio.to_thread(_pread, self._path(seq), length, offset)
        last = final and offset + len(data) >= end
        records, consumed, skipped = decode_records(data, final=last)
        if skipped:
            self.skipped_bytes += skipped
            log.error(
                "click log has unreadable bytes, skipped",
                extra={"file": self._path(seq).name, "offset": offset, "bytes": skipped},
            )
        if not records and not consumed and not last and max_bytes < 2 * MAX_RECORD_BYTES:
            # Only possible if one record is larger than max_bytes: read it whole.
            return await self.read(Position(seq, offset), max_bytes=MAX_RECORD_BYTES * 2)
        return records, Position(seq, offset + consumed)

    def checkpoint(self, at: Position) -> None:
        """Store `at` as shipped and delete the files wholly before it."""
        self.shipped = at
        tmp = self.folder / (_CHECKPOINT + ".tmp")
        tmp.write_text(f"{at.seq} {at.offset}\n")
        os.replace(tmp, self.folder / _CHECKPOINT)
        for seq in [s for s in self._files if s < at.seq]:
            self._delete(seq)

    def _next_file(self, at: Position) -> Position:
        seq, offset = at
        while seq != self._seq:
            size = self._files.get(seq)
            if size is not None and offset < size:
                break
            later = [s for s in self._files if s > seq]
            seq, offset = (min(later), 0) if later else (self._seq, 0)
        return Position(seq, offset)

    def _read_checkpoint(self) -> Position:
        try:
            seq, offset = (self.folder / _CHECKPOINT).read_text().split()
            return Position(int(seq), int(offset))
        except (OSError, ValueError):
            return Position(min(self._files, default=0), 0)  # all of it, again

    def _delete(self, seq: int) -> None:
        size = self._files.pop(seq)
        with suppress(FileNotFoundError):
            self._path(seq).unlink()
        self._disk_bytes -= size

    def _path(self, seq: int) -> Path:
        return self.folder / f"{_PREFIX}{seq:012d}{_SUFFIX}"


def _sync(fd: int | None, closing: list[int], folder: Path | None) -> None:
    for old in closing:
        try:
            os.fsync(old)
        finally:
            os.close(old)
    if fd is not None:
        os.fsync(fd)
    if folder is not None:
        # A new file's directory entry must be durable too, or a crash can lose the whole file.
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _pread(path: Path, length: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _seq(path: Path) -> int:
    try:
        return int(path.name[len(_PREFIX) : -len(_SUFFIX)])
    except ValueError:
        return 0
