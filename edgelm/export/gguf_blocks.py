"""GGUF quantized blocks carried over into :class:`QuantizedWeight` with no second rounding.

GGUF's legacy block formats hold 32 weights a block (ggml-common.h):

* ``Q4_0``: ``d`` (fp16), 16 bytes of nibbles;  ``w = d * (q - 8)``
* ``Q4_1``: ``d``, ``m`` (fp16), 16 bytes;      ``w = d * q + m``
* ``Q8_0``: ``d`` (fp16), 32 int8;              ``w = d * q``

Nibble ``j`` of a Q4 block's byte ``j`` is element ``j`` (low) and element ``j + 16``
(high). Every format maps onto a symmetric MatMulNBits block with the same scale; Q4_1's
``m`` becomes the block offset ``m + 8 d``. Other tensor types are dequantized with
gguf-py and quantized again by the caller.
"""

from __future__ import annotations

import numpy as np

from .quantize import QuantizedWeight

__all__ = ["CARRY_OVER_TYPES", "blocks_to_weight"]

BLOCK = 32
#: GGUF type name -> (bytes per block, bits of the resulting MatMulNBits codes)
CARRY_OVER_TYPES: dict[str, tuple[int, int]] = {"Q4_0": (18, 4), "Q4_1": (20, 4), "Q8_0": (34, 8)}


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """``[..., 16]`` bytes -> ``[..., 32]`` codes in element order."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def blocks_to_weight(type_name: str, raw: np.ndarray, n: int, k: int) -> QuantizedWeight:
    """Turn the raw bytes of a GGUF tensor ``[n, k]`` into a QuantizedWeight, exactly."""
    if type_name not in CARRY_OVER_TYPES:
        raise ValueError(f"GGUF type {type_name} cannot be carried over")
    block_bytes, bits = CARRY_OVER_TYPES[type_name]
    nb = k // BLOCK
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(n, nb, block_bytes)
    d = data[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if type_name == "Q8_0":
        q = data[..., 2:].view(np.int8).astype(np.int16) + 128
        return QuantizedWeight(8, BLOCK, q.astype(np.uint8).reshape(n, k), d, None, "gguf:Q8_0")
    if type_name == "Q4_0":
        q = _nibbles(data[..., 2:])
        return QuantizedWeight(4, BLOCK, q.reshape(n, k), d, None, "gguf:Q4_0")
    m = data[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    q = _nibbles(data[..., 4:])
    return QuantizedWeight(4, BLOCK, q.reshape(n, k), d, (m + 8.0 * d).astype(np.float32), "gguf:Q4_1")
