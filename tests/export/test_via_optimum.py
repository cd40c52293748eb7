"""``edgelm export --via optimum``: optimum's ONNX exporter, ONNX Runtime's quantizers, the
same verification and manifest, and the runtime on optimum's past-in/present-out graph
(runtime/past_session.py); a decoder edgelm's graph builder does not build (IBM's Granite,
here) goes that way by itself, with a note."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum.exporters.onnx")

import edgelm  # noqa: E402
from edgelm.cli import main  # noqa: E402
from edgelm.errors import ManifestError  # noqa: E402
from edgelm.export import ExportConfig, export  # noqa: E402
from edgelm.manifest import read_manifest  # noqa: E402


def _granite_folder(folder: Path) -> Path:
    """A tiny random Granite (multipliers on the embedding, residuals, attention and
    logits: nothing edgelm's graph has), saved with the byte-level tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from edgelm.export.tokenizer_files import write_byte_tokenizer

    folder.mkdir(parents=True)
    special = write_byte_tokenizer(folder)
    config = AutoConfig.for_model("granite", vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                  embedding_multiplier=6.0, residual_multiplier=0.5, attention_multiplier=0.1,
                                  logits_scaling=0.5, tie_word_embeddings=True, bos_token_id=special["bos_token_id"],
                                  eos_token_id=special["eos_token_id"])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(4.0)  # logits that spread like a trained model's, so top-1 measures something
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def granite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _granite_folder(tmp_path_factory.mktemp("granite") / "hf")


def _greedy_reference(folder: Path, ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = ref.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0,
                       attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def _greedy(model: edgelm.Model, ids: list[int], n: int, lookup: bool = False) -> list[int]:
    return list(model._tokens(ids, n, edgelm.SamplingParams(temperature=0.0), frozenset(), lookup))


def test_a_family_edgelm_does_not_build_goes_through_optimum_with_a_note(
        granite: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(granite), "-o", str(tmp_path / "m"), "--quant", "fp32", "--verify-prompts", "4"]) == 0
    err = capsys.readouterr().err
    assert "unsupported architecture 'granite'" in err and "through optimum" in err
    m = read_manifest(tmp_path / "m")
    assert m.architecture.model_type == "granite" and m.io.kv_shared_buffer is False
    assert m.source.info["via"] == "optimum" and m.verification.passed
    assert m.verification.max_abs_logit_diff <= 1e-3
    model = edgelm.load(tmp_path / "m", threads=1, context=128)
    ids = model.encode("the edge device")
    assert _greedy(model, ids, 40) == _greedy_reference(granite, ids, 40)
    # --via edgelm asks for edgelm's graph only: the builder's one-line refusal.
    code = main(["export", str(granite), "-o", str(tmp_path / "e"), "--via", "edgelm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "unsupported architecture 'granite'" in err[-1] and not (tmp_path / "e").exists()


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_onnx_runtime_quantizers_verify_and_generate(granite: Path, tmp_path: Path, quant: str) -> None:
    result = export(str(granite), tmp_path / "m", ExportConfig(quant=quant, via="optimum", progress=False,
                                                               verify_prompts=4))
    m = result.manifest
    assert m.verification.passed and m.verification.top1_agreement >= {"int4": 0.95, "int8": 0.97}[quant]
    assert m.quantization.linear_kernel == {"int4": "matmulnbits", "int8": "matmulinteger"}[quant]
    assert m.weights_bytes["linears"] > 0 and m.weights_bytes["embeddings"] > 0
    import onnx

    graph = onnx.load(str(tmp_path / "m" / "model.onnx"), load_external_data=False).graph
    if quant == "int4":  # the linears at 4 bits, the (untied) head at 8
        bits = sorted({a.i for n in graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"})
        assert bits == [4, 8]
    else:
        assert any(n.op_type == "MatMulInteger" for n in graph.node)
    model = edgelm.load(tmp_path / "m", threads=1, context=128)
    assert model.generate("the edge device", max_new_tokens=12)


@pytest.fixture(scope="module")
def llama_optimum(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("opt") / "fp32"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", via="optimum", progress=False,
                                                            verify_prompts=4))
    return out


def test_a_model_edgelm_builds_exports_through_optimum_on_request(llama_optimum: Path,
                                                                  tiny_models: dict[str, Path]) -> None:
    """The same tokens as transformers and as edgelm's own graph; lookup's verification passes
    and parallel samples run on the past-in/present-out session too."""
    model = edgelm.load(llama_optimum, threads=1, context=128, sequences=3)
    ids = model.encode("abc abd abe abc abd")
    want = _greedy_reference(tiny_models["llama-tied"], ids, 40)
    assert _greedy(model, ids, 40) == want
    assert _greedy(model, ids, 40, lookup=True) == want
    params = edgelm.SamplingParams(temperature=2.0, top_k=100, seed=5)
    model.eos_ids = frozenset()
    samples = model.generate("the edge", max_new_tokens=30, sampling=params, n=3)
    lone = edgelm.load(llama_optimum, threads=1, context=128)
    lone.eos_ids = frozenset()
    for i, text in enumerate(samples):
        assert text == lone.generate("the edge", max_new_tokens=30,
                                     sampling=edgelm.SamplingParams(**{**params.__dict__, "seed": 5 + i}))


def test_steps_and_rewinds_match_a_fresh_prefill(llama_optimum: Path) -> None:
    s = edgelm.load(llama_optimum, threads=1, context=64).session
    ids = list(range(3, 40))
    s.step(ids[:20])
    for t in ids[20:30]:
        s.step([t])
    s.rewind(25)
    got = s.step(ids[25:37], rows=3)
    s.reset()
    want = s.step(ids[:37], rows=3)
    assert np.allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="cannot rewind"):
        s.rewind(38)


def test_bench_and_profile_run_on_an_optimum_folder(llama_optimum: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(llama_optimum), "--device", "pixel-8-pro", "--context", "256"]) == 0
    assert "KV cache" in capsys.readouterr().out
    assert main(["bench", str(llama_optimum), "--prompt-tokens", "16", "--new-tokens", "16", "--runs", "1",
                 "--store", str(tmp_path / "store")]) == 0


def test_without_optimum_the_error_says_what_to_install(granite: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from edgelm.export import via_optimum

    monkeypatch.setattr(via_optimum, "optimum_available", lambda: "optimum: not installed")
    code = main(["export", str(granite), "-o", str(tmp_path / "o")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("[edgelm]")]
    assert code == 2 and len(lines) == 1 and "pip install" in lines[0] and "granite" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, message", [
    ({"attention_mask": ""}, "io.attention_mask"),
    ({"past_key": ["past_key_values.0.key"]}, "past_key"),
])
def test_a_hostile_optimum_manifest_is_refused(llama_optimum: Path, tmp_path: Path, change: dict,
                                               message: str) -> None:
    folder = tmp_path / "m"
    shutil.copytree(llama_optimum, folder)
    data = json.loads((folder / "edgelm.json").read_text())
    data["io"].update(change)
    (folder / "edgelm.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        edgelm.load(folder)
