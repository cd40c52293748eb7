"""BlockQuantMatMul (edgelm's operator) against ONNX Runtime's MatMulNBits, per SmolLM2 shape.

Each linear runs as a chain of 20 nodes in one session (so the figure is the node, not
Python's run() call), decode-sized (M = 1), verification-sized (M = 2, 4, 7, 8: drafted
tokens checked in one pass; the last column is edgelm's time against its own M = 1, the
issue-19 goal being <= 1.5x at M = 8) and prefill-sized (M = 128), 4-bit symmetric
weights (MatMulNBits' fastest format; Q4_1 offsets would cost it four more nodes) and the
8-bit head. MatMulNBits runs at accuracy level 4 (int8 activations); BlockQuantMatMul
with 16-bit activations. Both in the same process, alternated in rounds; prints the
median microseconds per node and the ratio.

Run: python benchmarks/blockquant_matmul.py [--threads 2] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgelm.export.graph import to_half
from edgelm.export.quantize import quantize_sym
from edgelm.runtime import ortops

SHAPES = [("qkv", 576, 960, 4), ("o", 576, 576, 4), ("gate_up", 576, 3072, 4), ("head", 576, 49152, 8)]


def chain(op: str, k: int, n: int, bits: int, codes: np.ndarray, scales: np.ndarray, nodes: int) -> bytes:
    """``nodes`` linears in a row; each output is sliced back to K columns for the next.
    BlockQuantMatMul takes its scales in float16, MatMulNBits in float32."""
    scales = to_half(scales, "scales") if op == "edgelm" else scales
    inits = [numpy_helper.from_array(codes, "B"), numpy_helper.from_array(scales, "S"),
             numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([k], np.int64), "end"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis")]
    graph_nodes, x = [], "A"
    for i in range(nodes):
        if op == "edgelm":
            graph_nodes.append(helper.make_node(ortops.OP_TYPE, [x, "B", "S"], [f"Y{i}"], domain=ortops.DOMAIN,
                                                K=k, N=n, bits=bits, block_size=32))
        else:
            graph_nodes.append(helper.make_node("MatMulNBits", [x, "B", "S"], [f"Y{i}"], domain="com.microsoft",
                                                K=k, N=n, bits=bits, block_size=32, accuracy_level=4))
        graph_nodes.append(helper.make_node("Slice", [f"Y{i}", "start", "end", "axis"], [f"X{i}"]))
        x = f"X{i}"
    graph = helper.make_graph(graph_nodes, "chain", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["m", k])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid(ortops.DOMAIN, 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    if ortops.library_path() is None:
        raise SystemExit("edgelm._ortops is not built: pip install the package first")
    rng = np.random.default_rng(0)
    print(f"{'shape':<10}{'M':>5}{'edgelm us':>12}{'MatMulNBits us':>16}{'edgelm speed':>14}{'vs M=1':>9}")
    for name, k, n, bits in SHAPES:
        w = quantize_sym(rng.standard_normal((n, k)).astype(np.float32) * 0.05, bits)
        single = None
        for m in (1, 2, 4, 7, 8, 128):
            nodes = 2 if n > 10000 else 20
            if name == "head" and m > 8:
                continue  # the graph runs the head on the last logits_rows positions only
            sessions = {}
            for op in ("edgelm", "matmulnbits"):
                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                ortops.register(so, required=True)
                sessions[op] = ort.InferenceSession(chain(op, k, n, bits, w.packed(), w.scales, nodes), so,
                                                    providers=["CPUExecutionProvider"])
            a = (rng.standard_normal((m, k)) * 0.5).astype(np.float32)
            calls = max(5, 200 // m)
            times: dict[str, list[float]] = {op: [] for op in sessions}
            for _ in range(args.rounds):
                for op, s in sessions.items():
                    for _ in range(3):
                        s.run(None, {"A": a})
                    t = time.perf_counter()
                    for _ in range(calls):
                        s.run(None, {"A": a})
                    times[op].append((time.perf_counter() - t) / calls / nodes * 1e6)
            mine, theirs = statistics.median(times["edgelm"]), statistics.median(times["matmulnbits"])
            single = mine if m == 1 else single
            assert single is not None
            print(f"{name:<10}{m:>5}{mine:>12.1f}{theirs:>16.1f}{theirs / mine:>13.2f}x{mine / single:>8.2f}x")


if __name__ == "__main__":
    main()
