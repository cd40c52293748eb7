"""What each SmolLM2-135M linear costs alone: one MatMulNBits node (int8 activations,
accuracy_level 4, block 32, random codes) per shape, decode-sized input (M = 1), median
of many runs, with 1 and 10 copies of the node in the graph (the difference is ONNX
Runtime's per-run overhead). The sum over a layer x 30 plus the head is the floor of
decode time on ORT's kernels with this graph layout.

Run: python benchmarks/matmulnbits_shapes.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgelm.export.quantize import pack_codes

MS = "com.microsoft"
SHAPES = [("qkv", 960, 576, 4), ("o", 576, 576, 4), ("gate_up", 3072, 576, 4), ("down", 576, 1536, 4),
          ("head 8-bit", 49152, 576, 8), ("head 4-bit", 49152, 576, 4)]


def model_bytes(n: int, k: int, bits: int, nodes: int) -> bytes:
    rng = np.random.default_rng(0)
    q = rng.integers(0, 2 ** bits, (n, k), dtype=np.uint8)
    inits = [numpy_helper.from_array(pack_codes(q, bits, 32), "B"),
             numpy_helper.from_array(rng.random((n, k // 32), dtype=np.float32) * 0.01, "S")]
    ns = [helper.make_node("MatMulNBits", ["X", "B", "S"], [f"Y{i}"], domain=MS, K=k, N=n, bits=bits,
                           block_size=32, accuracy_level=4) for i in range(nodes)]
    g = helper.make_graph(ns, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, k])],
                          [helper.make_tensor_value_info(f"Y{i}", TensorProto.FLOAT, [1, 1, n]) for i in range(nodes)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)])
    m.ir_version = 10
    return m.SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    per_layer = 0.0
    print(f"{'linear':12} {'N x K':>12} {'MB':>6} {'us (1 node)':>12} {'us/node (10)':>13}")
    for name, n, k, bits in SHAPES:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        res = []
        for nodes in (1, 10):
            s = ort.InferenceSession(model_bytes(n, k, bits, nodes), so, providers=["CPUExecutionProvider"])
            b = s.io_binding()
            b.bind_cpu_input("X", np.random.rand(1, 1, k).astype(np.float32))
            for i in range(nodes):
                b.bind_output(f"Y{i}", "cpu")
            for _ in range(20):
                s.run_with_iobinding(b)
            ts = []
            for _ in range(200 if n < 10000 else 30):
                t0 = time.perf_counter()
                s.run_with_iobinding(b)
                ts.append(time.perf_counter() - t0)
            res.append(statistics.median(ts) * 1e6 / nodes)
        if not name.startswith("head"):
            per_layer += res[1]
        print(f"{name:12} {n:>5} x {k:<5} {n * k * bits / 8 / 1e6:6.2f} {res[0]:12.1f} {res[1]:13.1f}")
    print(f"one layer's four linears: {per_layer:.0f} us; x 30 layers = {per_layer * 30 / 1000:.2f} ms per token")


if __name__ == "__main__":
    main()
