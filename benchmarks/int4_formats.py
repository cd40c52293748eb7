"""SmolLM2-135M int4 in two MatMulNBits formats, built from the same GGUF Q4_1 weights
and measured in the same run: the exported format (the Q4_1 blocks exactly: symmetric
codes + a per-block offset matmul) against integer zero points (each block re-rounded
to the best uint8 zero point, no offset ops). Prints decode tokens/s, top-1 agreement and
mean KL against the PyTorch model, and the ratios.

Run: python benchmarks/int4_formats.py [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from edgelm.export import graph as G
from edgelm.export.pipeline import prepare_weights
from edgelm.export.quantize import QuantizedWeight, pack_codes
from edgelm.export.sources import load_source
from edgelm.export.verify import verify_model
from edgelm.manifest import Quant
from edgelm.runtime.session import DecoderSession


def integer_zero_points(w: QuantizedWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-round each block of ``w`` to 4-bit codes with a uint8 zero point (min-max, the
    best of three range shrinks by squared error)."""
    deq = w.dequantize()
    n, k = deq.shape
    blocks = deq.reshape(n, k // 32, 32)
    best: tuple[np.ndarray, ...] | None = None
    for shrink in (1.0, 0.95, 0.9):
        lo = np.minimum(blocks.min(-1) * shrink, 0)
        hi = np.maximum(blocks.max(-1) * shrink, 0)
        scale = np.where(hi > lo, (hi - lo) / 15, 1e-8)
        zp = np.clip(np.rint(-lo / scale), 0, 15)
        q = np.clip(np.rint(blocks / scale[..., None]) + zp[..., None], 0, 15)
        err = (((q - zp[..., None]) * scale[..., None] - blocks) ** 2).sum(-1)
        if best is None:
            best = (err, q, scale, zp)
        else:
            better = err < best[0]
            best = (np.where(better, err, best[0]), np.where(better[..., None], q, best[1]),
                    np.where(better, scale, best[2]), np.where(better, zp, best[3]))
    assert best is not None
    _, q, scale, zp = best
    return q.astype(np.uint8).reshape(n, k), scale.astype(np.float32), zp.astype(np.uint8)


class IntegerZeroPointBuilder(G._Builder):
    def linear(self, x, w, name, bias=None):  # type: ignore[no-untyped-def]
        if not (isinstance(w, QuantizedWeight) and w.bits == 4):
            return super().linear(x, w, name, bias)
        q, scale, zp = integer_zero_points(w)
        n, k = q.shape
        nb = k // 32
        pad = np.zeros((n, (nb + 1) // 2 * 2), np.uint8)
        pad[:, :nb] = zp
        zp_packed = (pad[:, 0::2] | (pad[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
        y = self.op("MatMulNBits", [x, self.const(f"{name}.qweight", pack_codes(q, 4, 32)),
                                    self.const(f"{name}.scales", scale), self.const(f"{name}.zp", zp_packed)],
                    name=name, domain=G.MS, K=k, N=n, bits=4, block_size=32, accuracy_level=self.accuracy_level)[0]
        if bias is not None:
            y = self.op("Add", [y, self.const(f"{name}.bias", bias.astype(np.float32))])[0]
        return y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=128)
    args = ap.parse_args()
    src = load_source("smollm2-135m")
    weights, _ = prepare_weights(src, Quant.INT4)
    cos, sin = src.rope_cos_sin(512)
    a = src.arch
    a = dataclasses.replace(a, max_context=512)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, builder in (("exact Q4_1 (offsets)", None), ("integer zero points", IntegerZeroPointBuilder)):
            path = Path(tmp) / f"{len(results)}.onnx"
            model = G.build_model(a, weights, cos, sin, builder=builder)
            io = G.graph_io(a, model)
            onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")
            session = DecoderSession(path, a, io, context=args.steps + 130, threads=args.threads)
            session.step(list(range(100, 228)))
            t0 = time.perf_counter()
            for _ in range(args.steps):
                session.step([5])
            tps = args.steps / (time.perf_counter() - t0)
            v = verify_model(path, a, io, src.model, src.tokenizer_dir / "tokenizer.json", Quant.INT4,
                             threads=args.threads)
            results[label] = (tps, v.top1_agreement, v.mean_kl)
    base = results["exact Q4_1 (offsets)"]
    print(f"{'format':24} {'tok/s':>7} {'speed ratio':>12} {'top-1':>7} {'mean KL':>9}")
    for label, (tps, agree, kl) in results.items():
        print(f"{label:24} {tps:7.1f} {tps / base[0]:11.2f}x {agree:7.4f} {kl:9.4f}")
    src.close()


if __name__ == "__main__":
    main()
