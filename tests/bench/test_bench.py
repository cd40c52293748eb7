"""edgelm bench on a tiny model folder: figures, the store, history and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgelm.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_int4(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("bench") / "int4"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


def test_bench_json_history_compare(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "results.jsonl")
    args = ["bench", str(tiny_int4), "--runs", "2", "--new-tokens", "8", "--prompt-tokens", "16", "--threads", "1",
            "--store", store, "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("ttft_ms", "decode_tokens_per_s", "peak_rss_bytes", "prefill_tokens_per_s", "load_s",
                "sampling_share", "decode_tokens_per_s_p10", "decode_tokens_per_s_p90"):
        assert r[key] > 0, key
    assert r["energy"]["source"] == "estimated" and r["energy"]["joules_per_token"] > 0
    assert main(args) == 0
    capsys.readouterr()
    assert main(["bench", "--history", "--store", store]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["bench", "--compare", "1", "2", "--store", store]) == 0
    assert "decode tokens/s" in capsys.readouterr().out


def test_bench_errors_are_one_line(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path)]) == 2  # no manifest
    assert "edgelm.json" in capsys.readouterr().err
    assert main(["bench", str(tiny_int4), "--device", "phone"]) == 2
    assert "adb:SERIAL" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("garbage\n")
    assert main(["bench", "--history", "--store", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt at line 1" in err[0]
    assert bad.read_text() == "garbage\n"
