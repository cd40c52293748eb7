"""Every bad input gets a one-line error and exit status 2, never a traceback."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgelm.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    # Progress lines ("[edgelm] ...") may come first; the error is one line, the last.
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[edgelm]")]
    assert len(lines) == 1, err
    assert lines[0].startswith("edgelm export: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, err)


def test_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "no such file or folder")
    assert not (tmp_path / "o").exists()


def test_unknown_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["export", "mobilellm-9000m", "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "not a preset", "smollm2-135m")


def test_pickle_checkpoint_file_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "pytorch_model.bin"
    f.write_bytes(b"\x80\x04not really a pickle")
    code, err = _run(["export", str(f), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "pickle")


def test_pickle_checkpoint_folder_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    code, err = _run(["export", str(tmp_path / "m"), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "pickle", "safetensors")


def test_unsupported_architecture(tiny_models: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "gpt2"
    shutil.copytree(tiny_models["llama-tied"], src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (src / "config.json").write_text(json.dumps(cfg))
    code, err = _run(["export", str(src), "-o", str(tmp_path / "o"), "--via", "edgelm"], capsys)
    _assert_one_line_error(code, err, "unsupported architecture", "'gpt2'", "llama", "qwen2", "--via optimum")
    # Left to choose (auto), optimum would take a GPT-2; but these files hold a Llama's
    # weights, which transformers would replace by random ones: refused, nothing written.
    code, err = _run(["export", str(src), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "weights do not match config.json's gpt2 model", "41 tensor(s)")
    assert not (tmp_path / "o").exists()


def test_corrupt_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    code, err = _run(["export", str(f), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "bad.gguf")
    assert not (tmp_path / "o").exists()


def test_truncated_gguf(smollm2_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "truncated.gguf"
    with open(smollm2_gguf, "rb") as src, open(f, "wb") as dst:
        dst.write(src.read(4 << 20))
    code, err = _run(["export", str(f), "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "truncated.gguf")


def test_hub_id_without_network_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no route to the hub either way
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, err = _run(["export", "HuggingFaceTB/SmolLM2-135M", "-o", str(tmp_path / "o")], capsys)
    _assert_one_line_error(code, err, "cannot download", "Hugging Face Hub")


def _limit_file_size() -> None:
    # 256 kB per file: the export runs out of room as it would on a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, 256 << 10))
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_no_disk_space(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "edgelm.cli", "export", str(tiny_models["llama-untied"]),
                           "-o", str(out), "--quant", "fp32", "-q", "--no-verify"],
                          capture_output=True, text=True, preexec_fn=_limit_file_size, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no space left" in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".o.partial-*"))


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "export" in capsys.readouterr().out


def test_scales_past_float16_are_one_line_and_write_nothing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """BlockQuantMatMul keeps block scales in float16: weights whose scales exceed 65504
    are refused at export with the way out (MatMulNBits keeps float32), and no folder."""
    pytest.importorskip("torch")
    import torch
    from safetensors.torch import load_file, save_file

    from ..conftest import TINY_VARIANTS, build_tiny_hf_folder

    src = build_tiny_hf_folder(tmp_path / "huge", TINY_VARIANTS["llama-untied"])
    tensors = load_file(str(src / "model.safetensors"))
    tensors = {k: v * 1e7 if k.endswith("mlp.down_proj.weight") else v for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(src / "model.safetensors"),
              metadata={"format": "pt"})
    assert torch.isfinite(tensors[next(k for k in tensors if k.endswith("mlp.down_proj.weight"))]).all()
    out = tmp_path / "o"
    code, err = _run(["export", str(src), "-o", str(out), "--quant", "int4", "--no-verify", "--quiet"], capsys)
    _assert_one_line_error(code, err, "float16", "--kernel matmulnbits")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name not in ("huge",)]  # no half-written folder beside it
