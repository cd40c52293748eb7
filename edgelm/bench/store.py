"""The results store: one JSON line per benchmark run, appended, never rewritten.

Each record is written with a single ``write`` of one line and fsynced, so a killed
process loses at most the run it was writing; a final line without its newline is that
interrupted write and is skipped. Any other unreadable line is an error naming the
file and the line, and the file is left as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._io import cache_dir
from ..errors import EdgeLMError

__all__ = ["ResultsStore", "StoreError", "default_store_path"]


class StoreError(EdgeLMError):
    """The results store cannot be read or written."""


def default_store_path() -> Path:
    env = os.environ.get("EDGELM_RESULTS")
    return Path(env) if env else cache_dir() / "results.jsonl"


class ResultsStore:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_store_path()

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        records = self.read()  # refuse to append to a corrupt store
        record = {"id": max((r.get("id", 0) for r in records), default=0) + 1, **record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            prefix = b""
            if os.fstat(fd).st_size and not self._ends_with_newline():
                # Close off a killed writer's partial line; our record says so, which is
                # what lets read() tell that fragment from corruption.
                prefix = b"\n"
                record["after_interrupted_write"] = True
            os.write(fd, prefix + (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise StoreError(f"cannot read the results store {self.path}: {e.strerror}") from e
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # tail: b"" or an interrupted write
        out = []
        for n, raw in enumerate(complete, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                nxt = complete[n] if n < len(complete) else b""
                if b'"after_interrupted_write": true' in nxt:
                    continue  # a fragment from a killed writer, closed off by the next append
                raise StoreError(f"results store {self.path} is corrupt at line {n} ({e.__class__.__name__}); "
                                 "it was not modified") from e
            if not isinstance(rec, dict):
                raise StoreError(f"results store {self.path} is corrupt at line {n} (not an object)")
            out.append(rec)
        del tail
        return out

    def get(self, run_id: int) -> dict[str, Any]:
        for rec in self.read():
            if rec.get("id") == run_id:
                return rec
        raise StoreError(f"no run {run_id} in {self.path} (see edgelm bench --history)")
