"""The results store: append-only, one id per run under concurrency, survives a killed
writer and a full disk, refuses a corrupt or wrongly shaped file with the line and field
named, and never changes a file it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgelm.bench.record import BenchRecord, RecordError
from edgelm.bench.store import ResultsStore, StoreError
from tests.bench.records import make_record


def test_append_and_read(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.jsonl")
    a = s.append(make_record(decode_tps=1.0))
    b = s.append(make_record(decode_tps=2.0))
    assert (a.id, b.id) == (1, 2)
    assert [r.decode_tokens_per_s for r in s.read()] == [1.0, 2.0]
    assert s.get(2).decode_tokens_per_s == 2.0
    with pytest.raises(StoreError, match="no run 9"):
        s.get(9)


def test_record_round_trips_through_json() -> None:
    r = make_record(id=4)
    assert BenchRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_interrupted_write_loses_only_that_run(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    s = ResultsStore(path)
    s.append(make_record(decode_tps=1.0))
    with open(path, "ab") as f:
        f.write(b'{"x": 2, "trunc')  # a writer killed mid-line
    assert [r.decode_tokens_per_s for r in s.read()] == [1.0]
    s.append(make_record(decode_tps=3.0))
    assert [r.decode_tokens_per_s for r in s.read()] == [1.0, 3.0]


@pytest.mark.parametrize("line, match", [
    ("not json at all", "line 2"),
    ("{}", "line 2.time_utc: missing"),
    ("[1, 2]", "line 2: must be a JSON object"),
    (None, "line 2.energy.joules_per_token: must be a finite number, got 'abc'"),
    ("[" * 50000, "line 2"),
])
def test_corrupt_or_misshapen_store_is_a_clear_error_and_untouched(tmp_path: Path, line: str | None,
                                                                   match: str) -> None:
    if line is None:
        d = make_record().to_dict()
        d["energy"]["joules_per_token"] = "abc"
        line = json.dumps(d)
    path = tmp_path / "r.jsonl"
    good = json.dumps(make_record(id=1).to_dict())
    path.write_text(f"{good}\n{line}\n{good}\n")
    before = path.read_bytes()
    s = ResultsStore(path)
    with pytest.raises(StoreError, match=match.replace("[", r"\[")):
        s.read()
    with pytest.raises(StoreError):
        s.append(make_record())
    with pytest.raises(StoreError):
        s.check_writable()
    assert path.read_bytes() == before


def test_a_phone_that_returns_empty_json_is_refused() -> None:
    with pytest.raises(RecordError, match="time_utc: missing"):
        BenchRecord.from_dict({})


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_a_store_that_cannot_be_written_is_reported_before_any_work(tmp_path: Path, where: str) -> None:
    # Cases that hold for root too (CI runs as root, which ignores permission bits).
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    path = {"under a file": tmp_path / "file" / "r.jsonl", "a folder": tmp_path / "dir"}[where]
    with pytest.raises(StoreError, match="cannot be written|is a folder|cannot read"):
        ResultsStore(path).check_writable()


FULL_DISK_CHILD = """
import resource, sys
from tests.bench.records import make_record
from edgelm.bench.store import ResultsStore, StoreError
s = ResultsStore(sys.argv[1])
s.append(make_record())
size = __import__("os").path.getsize(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, size + 300))  # the next record does not fit
try:
    s.append(make_record())
except StoreError as e:
    print("REFUSED", e)
"""


def test_full_disk_is_an_error_and_leaves_no_half_record(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("REFUSED") and "store is unchanged" in proc.stdout
    assert [r.id for r in ResultsStore(path).read()] == [1]
    assert path.read_bytes().endswith(b"\n")


APPEND_CHILD = """
import sys
from tests.bench.records import make_record
from edgelm.bench.store import ResultsStore
s = ResultsStore(sys.argv[1])
for _ in range(int(sys.argv[2])):
    s.append(make_record())
"""


def test_concurrent_appends_get_unique_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", APPEND_CHILD, str(path), "50"], cwd=root) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    ids = [r.id for r in ResultsStore(path).read()]
    assert sorted(ids) == list(range(1, 201))


@pytest.mark.parametrize(("field", "value", "match"), [
    (("tokens_per_pass",), 0.5, "tokens_per_pass"), (("tokens_per_pass",), "abc", "tokens_per_pass"),
    (("tokens_per_pass",), 1e9, "tokens_per_pass"), (("settings", "lookup"), "yes", "settings.lookup"),
])
def test_lookup_fields_of_a_record_are_checked(field: tuple[str, ...], value: object, match: str) -> None:
    """A stored or a phone's record claiming less than one token per pass, an absurd count,
    or a lookup flag that is not true/false is refused, naming the field."""
    d = make_record().to_dict()
    assert d["tokens_per_pass"] == 1.0 and d["settings"]["lookup"] is False
    target = d
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    with pytest.raises(RecordError, match=match):
        BenchRecord.from_dict(d)
    del d["tokens_per_pass"], d["settings"]["lookup"]  # records stored before lookup existed
    if field == ("tokens_per_pass",):
        assert BenchRecord.from_dict(d).tokens_per_pass == 1.0


@pytest.mark.parametrize("value", [0, 65, -3, 2.5, "four", True])
def test_the_sequences_of_a_record_are_checked(value: object) -> None:
    """A stored or a phone's record claiming 0, too many, a fractional or a non-integer
    number of parallel sequences is refused, naming the field; one from before parallel
    decoding reads as one sequence."""
    d = make_record().to_dict()
    assert d["settings"]["sequences"] == 1
    d["settings"]["sequences"] = value
    with pytest.raises(RecordError, match="settings.sequences"):
        BenchRecord.from_dict(d)
    del d["settings"]["sequences"]
    assert BenchRecord.from_dict(d).settings.sequences == 1
