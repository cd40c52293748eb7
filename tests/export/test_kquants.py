"""GGUF K-quants read from their bytes: bit-exact against gguf-py's dequantization, and
carried into 32-weight blocks with the codes unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgelm.export.kquants import K_TYPES, dequantize, float16_exact_share, to_weight

gguf_quants = pytest.importorskip("gguf.quants")


def _random_tensor(type_name: str, n: int, k: int, seed: int) -> np.ndarray:
    """Random bytes with finite fp16 d / dmin of a trained model's magnitude (random bytes
    there would be NaN and infinity now and then)."""
    rng = np.random.default_rng(seed)
    size = K_TYPES[type_name]
    b = rng.integers(0, 256, (n, k // 256, size), dtype=np.uint8)
    halves = (rng.uniform(1e-4, 2e-2, (n, k // 256, 2)) * rng.choice([-1, 1], (n, k // 256, 2))).astype(np.float16)
    if type_name == "Q6_K":
        b[..., 208:210] = halves[..., :1].view(np.uint8)
    else:
        b[..., 0:4] = np.abs(halves).view(np.uint8)  # d, dmin
    return b.reshape(n, -1)


@pytest.mark.parametrize("type_name", sorted(K_TYPES))
def test_dequantize_is_gguf_py_bit_for_bit(type_name: str) -> None:
    n, k = 24, 1024
    raw = _random_tensor(type_name, n, k, seed=len(type_name) + k)
    qtype = getattr(gguf_quants.GGMLQuantizationType, type_name)
    want = gguf_quants.dequantize(raw, qtype).reshape(n, k).astype(np.float32)
    got = dequantize(type_name, raw, n, k)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("type_name", ["Q4_K", "Q5_K"])
def test_carried_blocks_keep_the_codes(type_name: str) -> None:
    n, k = 16, 512
    raw = _random_tensor(type_name, n, k, seed=3)
    ref = dequantize(type_name, raw, n, k)
    w = to_weight(type_name, raw, n, k)
    assert w.bits == (4 if type_name == "Q4_K" else 8) and w.block_size == 32
    # The same weights up to one float32 rounding of the offset (scale * (code - zp) + offset).
    span = np.abs(ref).reshape(n, -1, 32).max(axis=-1, keepdims=True)
    err = np.abs(w.dequantize() - ref).reshape(n, -1, 32) / span
    assert err.max() < 4e-7, err.max()
    share = float16_exact_share(w)
    assert 0 <= share["scales_exact_share"] <= 1 and share["scales_max_rel_change"] < 2.0 ** -11


def test_bad_shapes_are_errors() -> None:
    with pytest.raises(ValueError, match="multiple"):
        dequantize("Q4_K", np.zeros(144, np.uint8), 1, 200)
    with pytest.raises(ValueError, match="bytes"):
        dequantize("Q6_K", np.zeros(100, np.uint8), 1, 256)
    with pytest.raises(ValueError, match="cannot be carried"):
        to_weight("Q6_K", np.zeros(210, np.uint8), 1, 256)


@pytest.mark.parametrize("type_name", ["Q4_K", "Q6_K"])
def test_the_test_encoders_write_valid_k_quants(type_name: str) -> None:
    from tests.export.kquant_gguf import encode_q4_k, encode_q6_k

    w = np.random.default_rng(5).standard_normal((8, 512)).astype(np.float32) * 0.05
    raw = (encode_q4_k if type_name == "Q4_K" else encode_q6_k)(w)
    back = gguf_quants.dequantize(raw, getattr(gguf_quants.GGMLQuantizationType, type_name)).reshape(8, 512)
    rel = np.abs(back - w).max() / np.abs(w).max()
    assert rel < (0.08 if type_name == "Q4_K" else 0.03), rel
    assert np.array_equal(dequantize(type_name, raw, 8, 512), back.astype(np.float32))


def test_a_q4_k_m_style_gguf_exports_with_the_split_and_its_agreement(smollm2_gguf: Path, tmp_path: Path) -> None:
    """SmolLM2's GGUF rewritten the way a Q4_K_M file of a 576-wide model comes (K-quants
    need rows of 256: only ffn_down's 1,536 qualifies; Q4_K on even layers, Q6_K on odd):
    an int4 export carries the Q4_K codes, re-rounds Q6_K, says which in the manifest, and
    measures its agreement with the dequantized original (transformers reads the K-quants
    through gguf-py)."""
    from edgelm.export import ExportConfig, export
    from tests.export.kquant_gguf import rewrite_gguf

    def choose(name: str, shape: tuple[int, int]) -> str | None:
        if not name.endswith("ffn_down.weight") or shape[1] % 256:
            return None
        return "Q4_K" if int(name.split(".")[1]) % 2 == 0 else "Q6_K"

    src = tmp_path / "smollm2-q4_k_m.gguf"
    changed = rewrite_gguf(smollm2_gguf, src, choose)
    assert sorted(set(changed.values())) == ["Q4_K", "Q6_K"] and len(changed) == 30
    result = export(str(src), tmp_path / "out", ExportConfig(quant="int4", progress=False, verify_prompts=4))
    m = result.manifest
    mlp = m.quantization.methods["mlp"]
    assert "gguf:Q4_K (codes carried, block scales rounded to float16)" in mlp  # the even layers' down
    assert "gguf:Q4_1 (exact)" in mlp and "asym" in mlp  # gate/up as shipped; Q6_K's down re-rounded
    v = m.verification
    assert v is not None and v.passed and v.top1_agreement >= 0.95 and v.mean_kl < 0.05


def test_a_k_quant_tensor_that_lies_about_its_size_is_a_source_error() -> None:
    """The carry-over reads a GGUF tensor's raw bytes itself: bytes that do not fit the
    shape the file claims are one SourceError naming the tensor, not a numpy traceback."""
    from types import SimpleNamespace

    from edgelm.errors import SourceError
    from edgelm.export.sources import _gguf_carry_over
    from tests.conftest import TINY_VARIANTS

    t = SimpleNamespace(tensor_type=SimpleNamespace(name="Q4_K"), shape=np.array([512, 4]),
                        name="blk.0.ffn_down.weight", data=np.zeros(100, np.uint8))
    with pytest.raises(SourceError, match="blk.0.ffn_down.weight"):
        _gguf_carry_over(SimpleNamespace(tensors=[t]), TINY_VARIANTS["llama-tied"])
