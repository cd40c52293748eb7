"""Shared fixtures: tiny random deep-and-thin models of each supported variant, built in
seconds, saved as real Hugging Face folders (safetensors + tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelm.arch import Architecture, Family

#: name -> architecture; a few layers, thin, GQA, like the real models only smaller.
TINY_VARIANTS = {
    "llama-tied": Architecture(Family.LLAMA, 3, 64, 4, 2, 16, 160, 300, 256, rope_theta=10000.0,
                               tie_word_embeddings=True),
    "llama-untied": Architecture(Family.LLAMA, 2, 96, 6, 2, 16, 192, 300, 256, rope_theta=100000.0,
                                 tie_word_embeddings=False),
    "qwen2-bias": Architecture(Family.QWEN2, 2, 64, 4, 2, 16, 128, 300, 256, rope_theta=1000000.0,
                               tie_word_embeddings=True, attention_bias=True),
    # Qwen3: q/k RMSNorm per head, and head_dim x heads (128) wider than hidden (64).
    "qwen3": Architecture(Family.QWEN3, 2, 64, 4, 2, 32, 128, 300, 256, rope_theta=1000000.0, rms_norm_eps=1e-6,
                          tie_word_embeddings=True),
    # Gemma 3: four norms a layer ((1 + w) weights), GeGLU, q/k norms, embeddings times
    # sqrt(hidden), a query scale of its own, and sliding-window layers (8 keys, rope base
    # 10,000) around one global layer (base 10^6) that prompts of 20-64 tokens run past.
    "gemma3": Architecture(Family.GEMMA3, 4, 64, 4, 1, 32, 128, 300, 256, rope_theta=1000000.0, rms_norm_eps=1e-6,
                           tie_word_embeddings=True, sliding_window=8, global_layers=(2,), rope_local_theta=10000.0,
                           query_pre_attn_scalar=24.0),
    # Llama 3.2's rope: frequencies rescaled by the llama3 rule (TINY_CONFIG_EXTRA).
    "llama3-rope": Architecture(Family.LLAMA, 2, 64, 4, 2, 16, 128, 300, 256, rope_theta=500000.0,
                                tie_word_embeddings=True),
}
#: transformers config fields a variant needs beyond its Architecture.
TINY_CONFIG_EXTRA = {
    "llama3-rope": {"rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
}


def build_tiny_hf_folder(folder: Path, arch: Architecture, seed: int = 0, extra: dict | None = None) -> Path:
    import torch

    from edgelm.export.sources import _model_from_config, hf_config_for
    from edgelm.export.tokenizer_files import write_byte_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    special = write_byte_tokenizer(folder)
    torch.manual_seed(seed)
    model = _model_from_config(hf_config_for(arch, bos_token_id=special["bos_token_id"],
                                             eos_token_id=special["eos_token_id"], **(extra or {})))
    # Random init gives near-uniform logits (std ~0.3), where top-1 flips on ties measure
    # nothing. Scale the token table so logits spread like a trained model's (std ~5).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(2.0)
            elif arch.family is Family.GEMMA3 and name.endswith("norm.weight"):  # (1 + w): w starts at 0
                p.uniform_(-0.5, 0.5)
            elif name.endswith(("q_norm.weight", "k_norm.weight")):  # ones would not test that they apply
                p.uniform_(0.5, 1.5)
        model.get_input_embeddings().weight.mul_(8.0)
        if not arch.tie_word_embeddings:
            model.get_output_embeddings().weight.mul_(8.0)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: build_tiny_hf_folder(root / name, arch, extra=TINY_CONFIG_EXTRA.get(name))
            for name, arch in TINY_VARIANTS.items()}


@pytest.fixture(scope="session", params=["int4", "fp32"])
def tiny_folder(request: pytest.FixtureRequest, tiny_models: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tied tiny Llama exported unverified, int4 (edgelm's Attention and
    BlockQuantMatMul) and fp32 (GroupQueryAttention and MatMul): each test runs on both."""
    pytest.importorskip("torch")
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("tiny-folder") / request.param
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant=request.param, verify=False, progress=False))
    return out


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from edgelm.export.sources import smollm2_gguf_path

    return smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SmolLM2 exported to int4 (verified) and fp32 (unverified: its parity is tested on
    its own), shared by the slow tests."""
    from edgelm.export import ExportConfig, export

    root = tmp_path_factory.mktemp("smollm2")
    export("smollm2-135m", root / "int4", ExportConfig(quant="int4", progress=False))
    export("smollm2-135m", root / "fp32", ExportConfig(quant="fp32", verify=False, progress=False))
    return {"int4": root / "int4", "fp32": root / "fp32"}
