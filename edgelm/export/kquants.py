"""GGUF's K-quants (Q4_K, Q5_K, Q6_K) read straight from their bytes.

A K-quant super-block holds 256 weights (ggml-common.h, ``block_q4_K`` and kin):

* ``Q4_K`` (144 bytes): ``d``, ``dmin`` (fp16); 12 bytes packing eight 6-bit scales
  ``sc`` and eight 6-bit mins ``m``; 128 bytes of nibbles. Sub-block ``i`` (32 weights):
  ``w = (d * sc_i) * q - dmin * m_i``, ``q`` in 0..15.
* ``Q5_K`` (176 bytes): as Q4_K, plus 32 bytes whose bit ``i`` of byte ``l`` is the fifth
  bit of sub-block ``i``'s element ``l``: ``q`` in 0..31.
* ``Q6_K`` (210 bytes): 128 bytes of low nibbles, 64 bytes of 2-bit highs, sixteen int8
  scales (one per 16 weights), ``d`` (fp16) last: ``w = (d * sc_j) * (q - 32)``.

:func:`dequantize` gives the float32 weights gguf-py's dequantization gives, bit for bit
(a test: the same products in the same order, each exact in float32 but the last).
:func:`to_weight` carries Q4_K and Q5_K into edgelm's block format with the codes
unchanged: per 32-weight block a scale ``d * sc``, exact in float32 (an fp16 times a 6-bit
integer has at most 17 significant bits), and an offset rounded once in float32. The
operator stores both as float16, which does not hold them: on random K-quant tensors
(256 x 2048, :func:`float16_exact_share`) 19-20% of Q4_K's and Q5_K's block scales and
6-20% of their offsets survive float16 unchanged, the rest move by up to 2^-11 relative
(half a float16 step). Carrying them exactly needs a float32-scale block variant of
BlockQuantMatMul; until then they are re-rounded scales over exact codes. Q6_K's scales
change every 16 weights, finer than a 32-weight block: it cannot be carried, only
re-rounded.
"""

from __future__ import annotations

import numpy as np

from .quantize import QuantizedWeight

__all__ = ["K_TYPES", "CARRIED_K_TYPES", "dequantize", "to_weight", "float16_exact_share"]

SUPER = 256
#: type name -> bytes per super-block
K_TYPES: dict[str, int] = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}
#: K-quants whose codes a BlockQuantMatMul block holds as they are (with its bits).
CARRIED_K_TYPES: dict[str, int] = {"Q4_K": 4, "Q5_K": 8}


def _half(b: np.ndarray) -> np.ndarray:
    """``[..., 2]`` bytes -> float32 of the little-endian fp16 they hold."""
    return np.ascontiguousarray(b).view("<f2")[..., 0].astype(np.float32)


def _scales_mins(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 packed bytes of each super-block -> its eight 6-bit scales and mins
    ``[..., 8]``. Sub-blocks 0-3 take the low six bits of bytes 0-3 (scales) and 4-7
    (mins); sub-blocks 4-7 take a nibble of bytes 8-11 (scale low, min high) and, as their
    top two bits, the two bits bytes 0-3 and 4-7 have left over."""
    p = packed.astype(np.uint8)
    lo_s, lo_m, mixed = p[..., 0:4], p[..., 4:8], p[..., 8:12]
    sc = np.concatenate([lo_s & 63, (mixed & 15) | ((lo_s >> 6) << 4)], axis=-1)
    mn = np.concatenate([lo_m & 63, (mixed >> 4) | ((lo_m >> 6) << 4)], axis=-1)
    return sc, mn


def _blocks(type_name: str, raw: np.ndarray, n: int, k: int) -> np.ndarray:
    if type_name not in K_TYPES:
        raise ValueError(f"{type_name} is not a K-quant this reader knows ({', '.join(K_TYPES)})")
    if k % SUPER:
        raise ValueError(f"a {type_name} row holds whole 256-weight super-blocks; {k} is not a multiple")
    size = K_TYPES[type_name]
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    if data.size != n * (k // SUPER) * size:
        raise ValueError(f"a {n} x {k} {type_name} tensor has {n * (k // SUPER) * size} bytes, not {data.size}")
    return data.reshape(n, k // SUPER, size)


def _codes_4_5(type_name: str, b: np.ndarray) -> np.ndarray:
    """Q4_K / Q5_K super-blocks -> their codes ``[..., 8, 32]`` (sub-block, element)."""
    qs = b[..., 16:144] if type_name == "Q4_K" else b[..., 48:176]
    pairs = qs.reshape(*qs.shape[:-1], 4, 32)  # 32 bytes a pair of sub-blocks: 2j low, 2j+1 high
    q = np.stack([pairs & 15, pairs >> 4], axis=-2).reshape(*qs.shape[:-1], 8, 32)
    if type_name == "Q5_K":
        high = b[..., 16:48]  # bit i of byte l: sub-block i, element l
        bits = (high[..., None, :] >> np.arange(8, dtype=np.uint8)[:, None]) & 1
        q = q | (bits << 4)
    return q


def dequantize(type_name: str, raw: np.ndarray, n: int, k: int) -> np.ndarray:
    """A K-quant tensor's bytes (``n`` rows of ``k``) -> float32 ``[n, k]``."""
    b = _blocks(type_name, raw, n, k)
    if type_name == "Q6_K":
        d = _half(b[..., 208:210])
        sc = b[..., 192:208].view(np.int8).astype(np.float32)  # one per 16 weights
        ql, qh = b[..., 0:128], b[..., 128:192]
        halves = []
        for h in range(2):  # 128 weights each: four runs of 32 from 64 low bytes and 32 high bytes
            lo, hi = ql[..., 64 * h:64 * h + 64], qh[..., 32 * h:32 * h + 32]
            runs = [(lo[..., :32] & 15) | (((hi >> 0) & 3) << 4), (lo[..., 32:] & 15) | (((hi >> 2) & 3) << 4),
                    (lo[..., :32] >> 4) | (((hi >> 4) & 3) << 4), (lo[..., 32:] >> 4) | (((hi >> 6) & 3) << 4)]
            halves.append(np.concatenate(runs, axis=-1))
        q = np.concatenate(halves, axis=-1).astype(np.float32) - 32.0  # [..., 256]
        scale = (d[..., None] * sc)[..., :, None]  # [..., 16, 1]
        return (scale * q.reshape(*q.shape[:-1], 16, 16)).reshape(n, k)
    d, dmin = _half(b[..., 0:2]), _half(b[..., 2:4])
    sc, mn = _scales_mins(b[..., 4:16])
    scale = (d[..., None] * sc.astype(np.float32))[..., None]
    low = (dmin[..., None] * mn.astype(np.float32))[..., None]
    q = _codes_4_5(type_name, b).astype(np.float32)
    return (scale * q - low).reshape(n, k)


def to_weight(type_name: str, raw: np.ndarray, n: int, k: int) -> QuantizedWeight:
    """Q4_K (4-bit blocks) or Q5_K (8-bit blocks, codes 0..31 offset by the zero point) as
    a QuantizedWeight of 32-weight blocks: the codes as stored, ``scale = d * sc`` and an
    offset such that ``scale * (code - zp) + offset = d * sc * q - dmin * m``."""
    if type_name not in CARRIED_K_TYPES:
        raise ValueError(f"{type_name} cannot be carried into 32-weight blocks")
    bits = CARRIED_K_TYPES[type_name]
    b = _blocks(type_name, raw, n, k)
    d, dmin = _half(b[..., 0:2]), _half(b[..., 2:4])
    sc, mn = _scales_mins(b[..., 4:16])
    scale = (d[..., None] * sc.astype(np.float32)).reshape(n, k // 32)
    low = (dmin[..., None] * mn.astype(np.float32)).reshape(n, k // 32)
    q = _codes_4_5(type_name, b).reshape(n, k)
    if bits == 4:  # w = s q - low = s (q - 8) + (8 s - low)
        return QuantizedWeight(4, 32, q.astype(np.uint8), scale, (8.0 * scale - low).astype(np.float32),
                               f"gguf:{type_name}")
    # 8-bit codes q + 128: w = s (code - 128) - low
    return QuantizedWeight(8, 32, (q.astype(np.int16) + 128).astype(np.uint8), scale, (-low).astype(np.float32),
                           f"gguf:{type_name}")


def float16_exact_share(w: QuantizedWeight) -> dict[str, float]:
    """How much of a carried weight's float32 block scales and offsets float16 holds as
    they are: the share of blocks exact, and the largest relative change (the operator
    stores both as float16)."""
    out: dict[str, float] = {}
    for name, v in (("scales", w.scales), ("offsets", w.offsets)):
        if v is None:
            continue
        h = v.astype(np.float16).astype(np.float32)
        out[f"{name}_exact_share"] = float(np.mean(h == v))
        nz = v != 0
        out[f"{name}_max_rel_change"] = float(np.max(np.abs(h[nz] - v[nz]) / np.abs(v[nz]))) if nz.any() else 0.0
    return out
