"""The results store: one JSON line per benchmark run, appended, never rewritten.

Every line is parsed into a :class:`~edgelm.bench.record.BenchRecord` when read; a line that
is not JSON, or JSON of the wrong shape, is an error naming the file, the line and the
field, and the file is left as it is. An append takes an exclusive lock on the file
(``flock``) for reading the last id and writing the next line, so concurrent benchmarks
never share an id; the line goes down in full and is fsynced, and a short write (a full
disk, a file-size limit) is cut back off so the store never holds half a record. A killed
writer leaves at most a final line without its newline, which the next append closes off
and marks, and which reading then skips.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from .._io import NO_SPACE_ERRNOS, cache_dir
from ..errors import EdgeLMError
from .record import BenchRecord, RecordError

__all__ = ["ResultsStore", "StoreError", "default_store_path"]

#: A store larger than this is refused unread (a results file holds a few KB a run).
MAX_STORE_BYTES = 1 << 30


class StoreError(EdgeLMError):
    """The results store cannot be read or written."""


def default_store_path() -> Path:
    env = os.environ.get("EDGELM_RESULTS")
    return Path(env) if env else cache_dir() / "results.jsonl"


class ResultsStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_store_path()

    def check_writable(self) -> None:
        """Fail now, before a benchmark runs for minutes, if the run could not be stored:
        the store is corrupt, or it (or its folder) cannot be written."""
        self.read()
        try:
            if self.path.exists():
                if self.path.is_dir():
                    raise StoreError(f"the results store {self.path} is a folder, not a file")
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not os.access(self.path.parent, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "permission denied", str(self.path.parent))
        except OSError as e:
            raise StoreError(f"the results store {self.path} cannot be written ({e.strerror or e}); "
                             "pass --store FILE or --no-store") from e

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open the results store {self.path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def append(self, record: BenchRecord) -> BenchRecord:
        """Store ``record`` under the next id; returns it with that id."""
        with self._locked() as fd:
            records = self._parse(self._read_bytes(fd))  # refuse to append to a corrupt store
            size = os.fstat(fd).st_size
            prefix = b""
            interrupted = False
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Close off a killed writer's partial line; our record says so, which is
                # what lets read() tell that fragment from corruption.
                prefix, interrupted = b"\n", True
            stored = record.with_id(max((r.id or 0 for r in records), default=0) + 1, interrupted)
            line = prefix + (json.dumps(stored.to_dict(), sort_keys=True) + "\n").encode()
            self._write_all(fd, line, size)
        return stored

    def _write_all(self, fd: int, data: bytes, size_before: int) -> None:
        written = 0
        try:
            while written < len(data):
                n = os.write(fd, data[written:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "short write")
                written += n
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size_before)  # never leave half a record behind
            why = "no space left (or the file-size limit reached)" if e.errno in NO_SPACE_ERRNOS else e.strerror
            raise StoreError(f"could not store the run in {self.path}: {why}; the store is unchanged") from e

    def _read_bytes(self, fd: int) -> bytes:
        try:
            size = os.fstat(fd).st_size
            if size > MAX_STORE_BYTES:
                raise StoreError(f"the results store {self.path} is larger than 1 GiB: not a results store?")
            return os.pread(fd, size, 0)
        except OSError as e:
            raise StoreError(f"cannot read the results store {self.path}: {e.strerror or e}") from e

    def read(self) -> list[BenchRecord]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read the results store {self.path}: {e.strerror or e}") from e
        try:
            return self._parse(self._read_bytes(fd))
        finally:
            os.close(fd)

    def _parse(self, data: bytes) -> list[BenchRecord]:
        lines = data.split(b"\n")
        complete = lines[:-1]  # the last piece: b"" or an interrupted write
        out = []
        for n, raw in enumerate(complete, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                nxt = complete[n] if n < len(complete) else b""
                if b'"after_interrupted_write": true' in nxt:
                    continue  # a fragment from a killed writer, closed off by the next append
                raise StoreError(f"results store {self.path} is corrupt at line {n} ({e.__class__.__name__}); "
                                 "it was not modified") from None
            try:
                out.append(BenchRecord.from_dict(rec, where=f"line {n}"))
            except RecordError as e:
                raise StoreError(f"results store {self.path} is not a store of edgelm runs: {e}; "
                                 "it was not modified") from None
        return out

    def get(self, run_id: int) -> BenchRecord:
        for rec in self.read():
            if rec.id == run_id:
                return rec
        raise StoreError(f"no run {run_id} in {self.path} (see edgelm bench --history)")
