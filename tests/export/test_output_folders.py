"""Outputs never destroy a user's files: a folder is replaced only if edgelm wrote it, only
once the new one is complete, and the check happens at the rename itself (a folder that
appears meanwhile is left alone). Exercised on atomic_dir, the one place every output
folder goes through, and through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgelm import _io
from edgelm._io import OUTPUT_MARKER, atomic_dir
from edgelm.errors import ExportError


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    return path


def _intact(path: Path) -> bool:
    return (path / "thesis.tex").read_text() == "years of work"


def test_force_refuses_a_folder_edgelm_did_not_write(tmp_path: Path) -> None:
    target = _user_folder(tmp_path / "out")
    with pytest.raises(ExportError, match="did not write it"), atomic_dir(target, force=True) as tmp:
        (tmp / "edgelm.json").write_text("{}")
    assert _intact(target)
    assert not list(tmp_path.glob(".out.partial-*"))


def test_force_replaces_a_folder_edgelm_wrote(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_dir(target, marker=True) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / OUTPUT_MARKER).exists()
    with atomic_dir(target, force=True, marker=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == sorted([OUTPUT_MARKER, "b.txt"])
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # nothing left beside it


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_appears_while_the_job_runs_is_left_alone(tmp_path: Path, force: bool) -> None:
    target = tmp_path / "out"
    with pytest.raises(ExportError), atomic_dir(target, force=force) as tmp:
        (tmp / "edgelm.json").write_text("{}")
        _user_folder(target)  # e.g. another program, while the export verifies
    assert _intact(target)
    assert not list(tmp_path.glob(".out.partial-*"))


def test_a_folder_edgelm_wrote_that_appears_meanwhile_is_replaced_only_with_force(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(ExportError, match="appeared"), atomic_dir(target) as tmp:
        (tmp / "edgelm.json").write_text("{}")
        target.mkdir()
        (target / "edgelm.json").write_text('{"other": 1}')
    assert (target / "edgelm.json").read_text() == '{"other": 1}'


def test_a_symbolic_link_is_never_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "edgelm.json").write_text("{}")
    (tmp_path / "out").symlink_to(real)
    with pytest.raises(ExportError, match="did not write it"), atomic_dir(tmp_path / "out", force=True):
        pass
    assert (real / "edgelm.json").exists()


def test_the_fallback_without_renameat2_keeps_the_same_guarantees(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_io, "_renameat2", lambda src, dst, flags: False)
    target = tmp_path / "out"
    with atomic_dir(target, marker=True) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target, force=True, marker=True) as tmp:
        (tmp / "b").write_text("2")
    assert (target / "b").exists() and not (target / "a").exists()
    assert not (tmp_path / ".out.lock").exists()  # the lock is removed with its release
    other = _user_folder(tmp_path / "other")
    with pytest.raises(ExportError), atomic_dir(other, force=True):
        pass
    assert _intact(other)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_job_killed_between_the_fallback_renames_gets_its_folder_back(tmp_path: Path) -> None:
    pid = _dead_pid()
    old = tmp_path / f".out.old-{pid}"  # what a kill between "target -> old" and "tmp -> target" leaves
    old.mkdir()
    (old / "edgelm.json").write_text("{}")
    partial = tmp_path / f".out.partial-{pid}-abc"
    partial.mkdir()
    with atomic_dir(tmp_path / "other") as tmp:
        (tmp / OUTPUT_MARKER).write_text("")
    assert old.exists()  # another target's leftovers are not touched
    _io._remove_stale_partials(tmp_path / "out")
    assert (tmp_path / "out" / "edgelm.json").exists()
    assert not old.exists() and not partial.exists()


def test_a_live_jobs_partial_folder_is_not_removed(tmp_path: Path) -> None:
    mine = tmp_path / f".out.partial-{os.getpid()}-xyz"
    mine.mkdir()
    _io._remove_stale_partials(tmp_path / "out")
    assert mine.exists()


def test_export_dash_o_dot_with_force_in_a_folder_of_user_files(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    work = _user_folder(tmp_path / "work")
    proc = subprocess.run([sys.executable, "-m", "edgelm.cli", "export", str(tiny_models["llama-tied"]), "-o", ".",
                           "--force", "--quant", "fp32", "--no-verify", "-q"], cwd=work, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "did not write it" in proc.stderr
    assert _intact(work) and sorted(p.name for p in work.iterdir()) == ["thesis.tex"]


def test_quickstart_refuses_a_report_folder_of_user_files(tmp_path: Path) -> None:
    from edgelm.quickstart import quickstart

    reports = _user_folder(tmp_path / "reports")
    with pytest.raises(ExportError, match="did not write it"):
        quickstart(model_dir=tmp_path / "no-model", report_dir=reports)
    assert _intact(reports) and not (tmp_path / "no-model").exists()


def test_quickstart_adopts_a_report_folder_an_older_edgelm_wrote(tmp_path: Path) -> None:
    from edgelm._io import written_by_edgelm
    from edgelm.quickstart import REPORT_TITLE, _adopt_old_report

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "report.md").write_text(REPORT_TITLE + "\n\nold\n")
    _adopt_old_report(reports)
    assert written_by_edgelm(reports)


def test_the_fallback_lock_serialises_jobs_and_leaves_nothing(tmp_path: Path) -> None:
    """Four processes take the fallback lock on one target 25 times each and append to a
    log inside it: no two ever hold it at once, and no lock file is left."""
    script = f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from edgelm._io import _FallbackLock
log = Path({str(tmp_path / "log")!r})
for _ in range(25):
    with _FallbackLock(Path({str(tmp_path / "out")!r})):
        with open(log, "a") as f:
            f.write("in\\n")
        time.sleep(0.001)
        with open(log, "a") as f:
            f.write("out\\n")
"""
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    lines = (tmp_path / "log").read_text().split()
    assert len(lines) == 200 and lines == ["in", "out"] * 100
    assert not (tmp_path / ".out.lock").exists()
