"""Block quantization against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from edgelm.export.quantize import QuantizedWeight, pack_codes, quantize_asym, quantize_sym


def _weights(n: int = 48, k: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
    w[rng.random((n, k)) < 0.01] *= 20  # outliers, as trained weights have
    return w


@pytest.mark.parametrize("bits", [4, 8])
def test_sym_error_is_within_half_a_step(bits: int) -> None:
    w = _weights()
    q = quantize_sym(w, bits, 32)
    step = np.repeat(q.scales, 32, axis=1)
    assert np.all(np.abs(q.dequantize() - w) <= 0.5 * step + 1e-7)
    assert q.q.max() < 2**bits


def test_asym_beats_min_max_rounding() -> None:
    w = _weights()
    blocks = w.reshape(w.shape[0], -1, 32)
    lo, hi = blocks.min(-1, keepdims=True), blocks.max(-1, keepdims=True)
    scale = (hi - lo) / 15
    naive = (np.clip(np.rint((blocks - lo) / scale), 0, 15) * scale + lo).reshape(w.shape)
    q = quantize_asym(w, 4, 32)
    assert q.offsets is not None
    assert ((q.dequantize() - w) ** 2).sum() < ((naive - w) ** 2).sum()
    assert q.q.max() <= 15


def test_pack_codes_nibble_order() -> None:
    """MatMulNBits reads element 2i from the low nibble and 2i+1 from the high nibble."""
    q = np.arange(32, dtype=np.uint8).reshape(1, 32) % 16
    packed = pack_codes(q, 4, 32)
    assert packed.shape == (1, 1, 16)
    assert packed[0, 0, 0] == (0 | (1 << 4))
    assert packed[0, 0, 7] == (14 | (15 << 4))


def test_concat_rows_keeps_values_exactly() -> None:
    a = quantize_asym(_weights(16, 64, 1), 4, 32)
    b = quantize_sym(_weights(8, 64, 2), 4, 32)
    c = QuantizedWeight.concat_rows([a, b])
    np.testing.assert_array_equal(c.dequantize(), np.concatenate([a.dequantize(), b.dequantize()]))


def test_rejects_k_not_multiple_of_block() -> None:
    with pytest.raises(ValueError, match="multiple of the block size"):
        quantize_sym(np.zeros((4, 40), np.float32), 8, 32)
