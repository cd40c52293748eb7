"""Block-wise weight quantization in numpy, in the layout ONNX Runtime's MatMulNBits reads.

A quantized weight ``W`` of shape ``[N, K]`` (output features, input features) is cut
into blocks of ``block_size`` along K. Each block stores unsigned integer codes ``q``
of ``bits`` bits, one float scale, and optionally one float offset::

    W[n, k] = scale[n, b] * (q[n, k] - 2**(bits - 1)) + offset[n, b],   b = k // block_size

Without offsets this is exactly MatMulNBits with its default zero point (symmetric,
GGUF Q4_0 / Q8_0); with offsets it is GGUF Q4_1 (``d * q + m`` with
``offset = m + 8 * d``). ONNX Runtime's CPU kernel is ~30x slower with a float zero
point than without, so offsets are applied by a separate small matmul on per-block
sums of the activations (see ``graph.py``): exact, and it keeps the fast int8 kernel.

Methods:

* ``sym``  round-to-nearest, symmetric, scale = absmax / (2**(bits-1) - 1).
* ``asym`` asymmetric with offsets; scale and offset searched per block to minimise
  squared error (a grid over range shrinkage, then a least-squares refit of scale and
  offset for the chosen codes, as llama.cpp's ``make_qkx2_quants`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["QuantizedWeight", "quantize_sym", "quantize_asym", "pack_codes"]


@dataclass(frozen=True)
class QuantizedWeight:
    """Block-quantized ``[N, K]`` weight. ``q`` holds unpacked codes (uint8)."""

    bits: int
    block_size: int
    q: np.ndarray  # uint8 [N, K]
    scales: np.ndarray  # float32 [N, K // block_size]
    offsets: np.ndarray | None  # float32 [N, K // block_size] or None
    method: str

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"bits must be 4 or 8, got {self.bits}")
        n, k = self.q.shape
        if k % self.block_size:
            raise ValueError(f"K={k} is not a multiple of the block size {self.block_size}")
        nb = k // self.block_size
        if self.scales.shape != (n, nb):
            raise ValueError(f"scales shape {self.scales.shape} != {(n, nb)}")
        if self.offsets is not None and self.offsets.shape != (n, nb):
            raise ValueError(f"offsets shape {self.offsets.shape} != {(n, nb)}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape  # type: ignore[return-value]

    @property
    def zero_point(self) -> int:
        return 1 << (self.bits - 1)

    def dequantize(self) -> np.ndarray:
        n, k = self.q.shape
        nb = k // self.block_size
        codes = self.q.reshape(n, nb, self.block_size).astype(np.float32) - self.zero_point
        w = codes * self.scales[..., None]
        if self.offsets is not None:
            w = w + self.offsets[..., None]
        return w.reshape(n, k)

    def take_rows(self, index: np.ndarray) -> QuantizedWeight:
        return QuantizedWeight(self.bits, self.block_size, self.q[index], self.scales[index],
                               None if self.offsets is None else self.offsets[index], self.method)

    @staticmethod
    def concat_rows(parts: list[QuantizedWeight]) -> QuantizedWeight:
        """Stack weights along N (packing Q/K/V or gate/up); exact, nothing re-rounded."""
        first = parts[0]
        if any(p.bits != first.bits or p.block_size != first.block_size for p in parts):
            raise ValueError("cannot pack weights of different bit widths or block sizes")
        any_offsets = any(p.offsets is not None for p in parts)
        offsets = None
        if any_offsets:
            # A symmetric part gets zero offsets: same values, shared format.
            offsets = np.concatenate([p.offsets if p.offsets is not None else np.zeros_like(p.scales)
                                      for p in parts])
        methods = sorted({p.method for p in parts})
        return QuantizedWeight(first.bits, first.block_size, np.concatenate([p.q for p in parts]),
                               np.concatenate([p.scales for p in parts]), offsets, "+".join(methods))

    def packed(self) -> np.ndarray:
        """Codes packed as MatMulNBits' ``B``: uint8 ``[N, K // block, block * bits // 8]``."""
        return pack_codes(self.q, self.bits, self.block_size)

    def nbytes_packed(self) -> int:
        return self.q.size * self.bits // 8


def pack_codes(q: np.ndarray, bits: int, block_size: int) -> np.ndarray:
    n, k = q.shape
    blocks = q.reshape(n, k // block_size, block_size)
    if bits == 8:
        return np.ascontiguousarray(blocks, dtype=np.uint8)
    # 4 bits: element 2i in the low nibble, 2i+1 in the high nibble.
    return np.ascontiguousarray(blocks[..., 0::2] | (blocks[..., 1::2] << 4), dtype=np.uint8)


def _blocks(w: np.ndarray, block_size: int) -> np.ndarray:
    n, k = w.shape
    if k % block_size:
        raise ValueError(f"K={k} is not a multiple of the block size {block_size}")
    return w.astype(np.float32, copy=False).reshape(n, k // block_size, block_size)


def quantize_sym(w: np.ndarray, bits: int = 8, block_size: int = 32) -> QuantizedWeight:
    """Symmetric round-to-nearest. The numpy equivalent of GGUF's Q8_0 / Q4_0 rule, except
    that the codes are rounded against the scale as float16 keeps it (GGUF and
    BlockQuantMatMul store it so), not against the unrounded one."""
    blocks = _blocks(w, block_size)
    qmax = (1 << (bits - 1)) - 1
    amax = np.abs(blocks).max(axis=-1)
    scales = (amax / qmax).astype(np.float32)
    with np.errstate(over="ignore"):
        half = scales.astype(np.float16).astype(np.float32)
    scales = np.where(np.isfinite(half) & (half > 0), half, scales)  # past float16's range: as is
    inv = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales > 0)
    codes = np.clip(np.rint(blocks * inv[..., None]), -qmax - 1, qmax) + (qmax + 1)
    return QuantizedWeight(bits, block_size, codes.astype(np.uint8).reshape(w.shape), scales, None, "sym")


def quantize_asym(w: np.ndarray, bits: int = 4, block_size: int = 32, grid: int = 16,
                  refit_steps: int = 2) -> QuantizedWeight:
    """Asymmetric (scale and offset per block) quantization minimising squared error."""
    blocks = _blocks(w, block_size)
    levels = (1 << bits) - 1
    lo = blocks.min(axis=-1)
    hi = blocks.max(axis=-1)
    best_err = np.full(lo.shape, np.inf, dtype=np.float32)
    best_scale = np.zeros_like(lo)
    best_min = np.zeros_like(lo)
    best_codes = np.zeros(blocks.shape, dtype=np.uint8)
    # Shrinking the range clips a few outliers but refines the grid for the rest.
    for i in range(grid):
        shrink = 1.0 - 0.2 * i / max(grid - 1, 1)
        centre = 0.5 * (lo + hi)
        half = 0.5 * (hi - lo) * shrink
        mn, mx = centre - half, centre + half
        scale = (mx - mn) / levels
        inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)
        codes = np.clip(np.rint((blocks - mn[..., None]) * inv[..., None]), 0, levels)
        for _ in range(refit_steps):
            scale, mn = _refit(blocks, codes, scale, mn)
        err = ((codes * scale[..., None] + mn[..., None] - blocks) ** 2).sum(axis=-1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_scale = np.where(better, scale, best_scale)
        best_min = np.where(better, mn, best_min)
        best_codes = np.where(better[..., None], codes.astype(np.uint8), best_codes)
    zp = 1 << (bits - 1)
    offsets = (best_min + zp * best_scale).astype(np.float32)
    return QuantizedWeight(bits, block_size, best_codes.reshape(w.shape), best_scale.astype(np.float32),
                           offsets, "asym-mse")


def _refit(blocks: np.ndarray, codes: np.ndarray, scale: np.ndarray, mn: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares scale and offset for fixed codes (keeps the old fit where degenerate)."""
    n = blocks.shape[-1]
    sq = codes.sum(-1)
    sqq = (codes * codes).sum(-1)
    sw = blocks.sum(-1)
    sqw = (codes * blocks).sum(-1)
    det = n * sqq - sq * sq
    ok = det > 1e-12
    safe = np.where(ok, det, 1.0)
    new_scale = (n * sqw - sq * sw) / safe
    new_min = (sw - new_scale * sq) / n
    ok &= new_scale > 0
    return np.where(ok, new_scale, scale).astype(np.float32), np.where(ok, new_min, mn).astype(np.float32)
