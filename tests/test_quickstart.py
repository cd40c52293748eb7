"""edgelm quickstart on the real SmolLM2 folder: answer, bench, profiles, plan, report."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_writes_a_report(smollm2_folders: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from edgelm.bench import ResultsStore
    from edgelm.quickstart import quickstart

    monkeypatch.setenv("EDGELM_CACHE", str(tmp_path / "cache"))
    report = quickstart(smollm2_folders["int4"], tmp_path / "report", threads=2)
    md = (report / "report.md").read_text()
    assert "Paris" in md
    assert "tokens/s" in md and "Pixel 8 Pro" in md and "limiting factor" in md
    assert (report / "devices.png").stat().st_size > 1000
    assert len(ResultsStore().read()) == 1
    assert "report:" in capsys.readouterr().out


def test_quickstart_exports_again_over_a_folder_from_an_older_edgelm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    from edgelm.errors import EdgeLMError
    from edgelm.quickstart import quickstart

    old = tmp_path / "model"
    old.mkdir()
    (old / "edgelm.json").write_text('{"schema_version": 1}')
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], *a: object, **k: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1)  # stop there: only the decision is under test

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(EdgeLMError, match="exporting smollm2-135m failed"):
        quickstart(old, tmp_path / "report", threads=2)
    assert seen and "--force" in seen[0] and str(old) in seen[0]
    assert "exporting it again" in capsys.readouterr().err
