"""The results store: append-only, survives a killed writer, refuses a corrupt file."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelm.bench.store import ResultsStore, StoreError


def test_append_and_read(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.jsonl")
    a = s.append({"x": 1})
    b = s.append({"x": 2})
    assert (a["id"], b["id"]) == (1, 2)
    assert [r["x"] for r in s.read()] == [1, 2]
    assert s.get(2)["x"] == 2
    with pytest.raises(StoreError, match="no run 9"):
        s.get(9)


def test_interrupted_write_loses_only_that_run(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    s = ResultsStore(path)
    s.append({"x": 1})
    with open(path, "ab") as f:
        f.write(b'{"x": 2, "trunc')  # a writer killed mid-line
    assert [r["x"] for r in s.read()] == [1]
    s.append({"x": 3})
    assert [r["x"] for r in s.read()] == [1, 3]


def test_corrupt_store_is_a_clear_error_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\nnot json at all\n{"id": 3}\n')
    before = path.read_bytes()
    s = ResultsStore(path)
    with pytest.raises(StoreError, match="line 2"):
        s.read()
    with pytest.raises(StoreError):
        s.append({"x": 4})
    assert path.read_bytes() == before
