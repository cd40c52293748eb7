"""GGUF files of the 2026 families (``qwen3``, ``gemma3``), written by the tests from tiny
random models the way llama.cpp's converter lays them out, with SmolLM2's tokenizer: they
load in transformers as the model they were written from, and edgelm exports them with the
Q8_0 blocks carried exactly, verified against that reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gguf")

from edgelm.arch import Architecture, Family  # noqa: E402
from edgelm.export import ExportConfig, export  # noqa: E402

from ..conftest import build_tiny_hf_folder  # noqa: E402
from .kquant_gguf import write_model_gguf  # noqa: E402

VOCAB = 49152  # SmolLM2's tokenizer, whose GGUF fields the files take
#: Shapes transformers' GGUF reader gives back: it keeps Qwen3Config's head_dim (128) and
#: Gemma 3's defaults (a global layer every sixth, query_pre_attn_scalar 256, local base 10^4).
FAMILIES = {
    "qwen3": Architecture(Family.QWEN3, 2, 64, 2, 1, 128, 128, VOCAB, 256, rope_theta=1000000.0,
                          rms_norm_eps=1e-6, tie_word_embeddings=True),
    "gemma3": Architecture(Family.GEMMA3, 6, 64, 4, 1, 32, 128, VOCAB, 256, rope_theta=1000000.0,
                           rms_norm_eps=1e-6, tie_word_embeddings=True, sliding_window=8, global_layers=(5,),
                           rope_local_theta=10000.0, query_pre_attn_scalar=256.0),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def gguf_file(request: pytest.FixtureRequest, smollm2_gguf: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp(f"gguf-{request.param}")
    hf = build_tiny_hf_folder(root / "hf", FAMILIES[request.param], seed=3)
    model = AutoModelForCausalLM.from_pretrained(hf, dtype="float32").eval()
    path = root / f"{request.param}.gguf"
    types = write_model_gguf(model, path, smollm2_gguf, "Q8_0")
    assert {"Q8_0", "F32"} == set(types.values())
    return request.param, hf, path


def test_the_written_gguf_loads_as_its_model(gguf_file: tuple[str, Path, Path]) -> None:
    """The writer's layout (names, Gemma's 1 + w norms, the config keys) is what
    transformers reads: the same logits up to Q8_0's rounding."""
    import torch
    from transformers import AutoModelForCausalLM

    _, hf, path = gguf_file
    ids = torch.tensor([list(range(100, 140))])
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(hf, dtype="float32")(ids).logits[0].numpy()
        got = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                   dtype="float32")(ids).logits[0].numpy()
    assert (want.argmax(-1) == got.argmax(-1)).mean() >= 0.9
    assert np.abs(want - got).max() < 0.05 * np.abs(want).max()


def test_exports_with_the_blocks_carried_and_verifies(gguf_file: tuple[str, Path, Path], tmp_path: Path) -> None:
    """int8: every linear's Q8_0 blocks as they are, so the export keeps the dequantized
    reference's top-1 (the fp32 path from a GGUF is the Hugging Face one, tested there)."""
    family, _, path = gguf_file
    result = export(str(path), tmp_path / "m", ExportConfig(quant="int8", progress=False, verify_prompts=6))
    m = result.manifest
    assert m.architecture.family.value == family and m.source.kind == "gguf"
    assert m.verification.passed and m.verification.top1_agreement >= 0.99
    assert m.quantization.methods["attention"].startswith("gguf:Q8_0")
    assert m.quantization.methods["mlp"].startswith("gguf:Q8_0")
    if family == "gemma3":
        assert m.architecture.sliding_window == 8 and m.architecture.global_layers == (5,)
