"""GGUF blocks carried over must be bit-exact with gguf-py's reference dequantization
(which mirrors ggml's C code) in the form edgelm's kernel computes them: ``d * (q - 8)``
(Q4_0), ``d * q`` (Q8_0) and ``d * q + m`` (Q4_1, with the file's own float16 ``d`` and
``m``). MatMulNBits' form of Q4_1 (an offset ``m + 8 d``) is equal only up to rounding,
and is tested as such."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from edgelm.export.gguf_blocks import CARRY_OVER_TYPES, blocks_to_weight  # noqa: E402
from edgelm.export.graph import kernel_blocks  # noqa: E402
from edgelm.export.quantize import QuantizedWeight  # noqa: E402


def _kernel_weights(w: QuantizedWeight) -> np.ndarray:
    """W as BlockQuantMatMul computes it from the scales and mins the graph stores (float16,
    mins four rows interleaved), in float32 as ggml does."""
    scales, mins = kernel_blocks(w)
    if mins is None:
        return w.dequantize()
    n, k = w.q.shape
    nb = k // w.block_size
    mins = mins.transpose(0, 2, 1).reshape(-1, nb)[:n]  # undo the four-row interleave
    codes = w.q.reshape(n, nb, w.block_size).astype(np.float32)
    return (scales.astype(np.float32)[..., None] * codes + mins.astype(np.float32)[..., None]).reshape(n, k)


def _assert_bit_exact(got: np.ndarray, ref: np.ndarray) -> None:
    bad = np.argwhere(got.view(np.uint32) != ref.astype(np.float32).view(np.uint32))
    assert bad.size == 0, f"{len(bad)} values differ, first at {bad[:3].tolist()}"


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
    w = blocks_to_weight(type_name, raw, n, k)
    _assert_bit_exact(_kernel_weights(w), ref)
    if type_name == "Q4_1":
        # The file's d and m, carried unchanged into the kernel's float16 blocks.
        d = raw.reshape(n, k // 32, 20)[..., 0:2].copy().view(np.float16)[..., 0]
        assert np.array_equal(kernel_blocks(w)[0].view(np.uint16), d.view(np.uint16))


def test_q4_1_in_matmulnbits_form_is_equal_up_to_rounding() -> None:
    n, k = 24, 128
    raw = _random_blocks("Q4_1", n, k, seed=4)
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).reshape(n, k)
    got = blocks_to_weight("Q4_1", raw, n, k).dequantize()  # d * (q - 8) + (m + 8 d)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())))


def test_real_smollm2_tensors_are_exact(smollm2_gguf: Path) -> None:
    reader = gguf.GGUFReader(str(smollm2_gguf))
    seen = set()
    for t in reader.tensors:
        kind = t.tensor_type.name
        if kind in CARRY_OVER_TYPES and kind not in seen:
            seen.add(kind)
            n, k = int(t.shape[1]), int(t.shape[0])
            ref = gguf.quants.dequantize(t.data, t.tensor_type).reshape(n, k)
            _assert_bit_exact(_kernel_weights(blocks_to_weight(kind, t.data, n, k)), ref)
    assert seen == {"Q4_1", "Q8_0"}
