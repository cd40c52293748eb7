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
