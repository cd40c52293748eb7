"""Export of tiny random models of every supported variant: parity, agreement, manifest,
atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edgelm._io import sha256_file  # noqa: E402
from edgelm.export import ExportConfig, export  # noqa: E402
from edgelm.manifest import read_manifest  # noqa: E402
from edgelm.runtime.session import DecoderSession  # noqa: E402

from ..conftest import TINY_VARIANTS  # noqa: E402

# Random weights give flatter next-token distributions than trained ones, so int8
# activation rounding flips a few more near-ties; hold them to 0.9 (SmolLM2 is held to
# the defaults in test_smollm2.py).
QUIET = {"progress": False, "verify_prompts": 6, "verify_tokens": 48, "min_agreement": 0.9}


def _reference_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _onnx_logits(folder: Path, ids: list[int], prefill: int) -> np.ndarray:
    m = read_manifest(folder)
    a = m.architecture
    s = DecoderSession(folder / m.model_file, a, m.io, context=64, threads=1)
    out = [s.step(ids[:prefill]).copy()]
    out += [s.step([t]).copy() for t in ids[prefill:-1]]
    return np.stack(out)


@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_fp32_matches_transformers(variant: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "fp32"
    result = export(str(tiny_models[variant]), out, ExportConfig(quant="fp32", **QUIET))
    v = result.manifest.verification
    assert v is not None and v.passed and v.max_abs_logit_diff <= 1e-3
    # An independent check on a sequence the built-in verification never saw.
    ids = list(np.random.default_rng(7).integers(0, TINY_VARIANTS[variant].vocab_size, 40))
    ref = _reference_logits(tiny_models[variant], ids)[9:39]
    got = _onnx_logits(out, ids, prefill=10)
    assert np.abs(got - ref).max() <= 1e-3


@pytest.mark.parametrize("quant,floor", [("int8", 0.9), ("int4", 0.9)])
@pytest.mark.parametrize("variant", sorted(TINY_VARIANTS))
def test_quantized_agreement(variant: str, quant: str, floor: float, tiny_models: dict[str, Path],
                             tmp_path: Path) -> None:
    result = export(str(tiny_models[variant]), tmp_path / quant, ExportConfig(quant=quant, **QUIET))
    v = result.manifest.verification
    assert v is not None
    assert v.top1_agreement >= floor, v
    assert 0 <= v.mean_kl < 0.05
    q = result.manifest.quantization
    assert q.linear_bits == (8 if quant == "int8" else 4)
    assert q.head_bits == 8 and q.embedding_bits == 8


def test_manifest_contents(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    arch = TINY_VARIANTS["llama-untied"]
    export(str(tiny_models["llama-untied"]), out, ExportConfig(quant="int4", **QUIET))
    raw = json.loads((out / "edgelm.json").read_text())
    for key in ("schema_version", "architecture", "parameter_count", "quantization", "weights_bytes", "files",
                "tools", "verification", "io", "generation"):
        assert key in raw
    m = read_manifest(out)
    assert m.architecture == arch
    assert m.parameter_count == arch.parameter_count()
    names = {f.name for f in m.files}
    assert {"model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    for f in m.files:
        assert (out / f.name).stat().st_size == f.bytes
        assert sha256_file(out / f.name) == f.sha256
    wb = m.weights_bytes
    assert wb["head"] > 0 and wb["embeddings"] > 0 and wb["attention"] > 0 and wb["mlp"] > 0 and wb["scales"] > 0
    assert wb["total"] == sum(v for k, v in wb.items() if k != "total")
    # int4 linears: half a byte per weight in the packed codes.
    h, f = arch.hidden_size, arch.intermediate_size
    assert wb["mlp"] == arch.num_layers * 3 * h * f // 2
    assert {"onnx", "onnxruntime", "torch", "transformers"} <= m.tools.keys()
    assert m.quantization.float_tensors
    assert m.generation.eos_token_id == (2,)


def test_existing_output_refused_then_forced(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from edgelm.errors import ExportError

    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", **QUIET))
    # --force replaces only a folder edgelm wrote: this one is the user's.
    with pytest.raises(ExportError, match="did not write it"):
        export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", force=True, **QUIET))
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    out.rmdir()
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", **QUIET))
    (out / "stale.txt").write_text("from the first export")
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", force=True, **QUIET))
    assert not (out / "stale.txt").exists() and (out / "edgelm.json").exists()


def _start_export(src: Path, out: Path) -> subprocess.Popen[bytes]:
    code = ("import sys; from edgelm.cli import main; "
            f"sys.exit(main(['export', {str(src)!r}, '-o', {str(out)!r}, '--quant', 'int4', '-q', "
            # Long enough verification that the signal always lands mid-export, however
            # fast or loaded the machine (a tiny model's export could finish first).
            "'--verify-prompts', '2000']))")
    # SIGINT back to its default in the child: a job started in the background by a
    # non-interactive shell inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt (the test would hang instead of testing the cleanup).
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_partial(parent: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(parent.glob(".out.partial-*/model.onnx.data")):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the export never started writing")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_export_leaves_no_folder(sig: int, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start_export(tiny_models["llama-tied"], out)
    _wait_for_partial(tmp_path, proc)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()
    if sig == signal.SIGINT:
        assert not list(tmp_path.glob(".out.partial-*"))  # cleaned up on the way out
    # A killed export's leftovers are removed by the next export to the same place.
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", verify=False, progress=False))
    assert out.exists() and not list(tmp_path.glob(".out.partial-*"))
