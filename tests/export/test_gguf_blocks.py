"""GGUF blocks carried over into MatMulNBits form must be bit-exact with gguf-py's
reference dequantization (which mirrors ggml's C code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from edgelm.export.gguf_blocks import CARRY_OVER_TYPES, blocks_to_weight  # noqa: E402


def _random_blocks(type_name: str, n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block_bytes, _ = CARRY_OVER_TYPES[type_name]
    raw = rng.integers(0, 256, size=(n, k // 32, block_bytes), dtype=np.uint8)
    # Finite fp16 scales (and mins): random bytes could make inf/NaN.
    d = (rng.standard_normal((n, k // 32)) * 0.01).astype(np.float16)
    raw[..., 0:2] = d.view(np.uint8).reshape(n, k // 32, 2)
    if type_name == "Q4_1":
        m = (rng.standard_normal((n, k // 32)) * 0.05).astype(np.float16)
        raw[..., 2:4] = m.view(np.uint8).reshape(n, k // 32, 2)
    return raw.reshape(n, -1)


@pytest.mark.parametrize("type_name", sorted(CARRY_OVER_TYPES))
def test_random_blocks_are_bit_exact(type_name: str) -> None:
    n, k = 24, 128
    raw = _random_blocks(type_name, n, k, seed=len(type_name))
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[type_name]).reshape(n, k)
    got = blocks_to_weight(type_name, raw, n, k).dequantize()
    if type_name == "Q4_1":
        # d * q + m is computed as d * (q - 8) + (m + 8 d): equal up to float rounding.
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())))
    else:
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"{len(bad)} values differ, first at {bad[:3].tolist()}"


def test_real_smollm2_tensors_are_exact(smollm2_gguf: Path) -> None:
    reader = gguf.GGUFReader(str(smollm2_gguf))
    seen = set()
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in CARRY_OVER_TYPES and kind not in seen:
            seen.add(kind)
            n, k = int(t.shape[1]), int(t.shape[0])
            ref = gguf.quants.dequantize(t.data, t.tensor_type)
            got = blocks_to_weight(kind, t.data, n, k).dequantize()
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert seen == {"Q4_1", "Q8_0"}
