"""ONNX Runtime's MatMulNBits on this CPU by weight format: no zero point (symmetric),
uint8 zero points, float zero points (what GGUF Q4_1 maps onto directly), with int8
(accuracy_level 4) or float32 activations. Prints microseconds per 576x1536 matmul and
the ratio to 4-bit symmetric with int8 activations, all measured in this run.

Run: python benchmarks/matmulnbits_zero_points.py
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

K, N, BLOCK, CHAIN = 576, 1536, 32, 40


def build(bits: int, zero_points: str, accuracy_level: int, rng: np.random.Generator) -> bytes:
    nb = K // BLOCK
    q = rng.integers(0, 2**bits, size=(N, nb, BLOCK)).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8) if bits == 4 else q
    inits = [numpy_helper.from_array(packed, "B"),
             numpy_helper.from_array((rng.random((N * nb)) * 0.01 + 0.001).astype(np.float32), "S")]
    inputs = ["B", "S"]
    if zero_points == "float":
        inits.append(numpy_helper.from_array((rng.random(N * nb) * (2**bits - 1)).astype(np.float32), "Z"))
        inputs.append("Z")
    elif zero_points == "uint8":
        zp = rng.integers(0, 2**bits, size=(N, nb)).astype(np.uint8)
        if bits == 4:
            pad = np.zeros((N, (nb + 1) // 2 * 2), np.uint8)
            pad[:, :nb] = zp
            zp = (pad[:, 0::2] | (pad[:, 1::2] << 4)).astype(np.uint8)
        inits.append(numpy_helper.from_array(zp.reshape(-1), "Z"))
        inputs.append("Z")
    inits += [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("st", 0), ("en", K), ("ax", -1))]
    nodes, prev = [], "x"
    # A chain of matmuls (each output sliced back to K wide) so per-run overhead is amortised.
    for i in range(CHAIN):
        nodes.append(helper.make_node("MatMulNBits", [prev, *inputs], [f"y{i}"], domain="com.microsoft", K=K, N=N,
                                      bits=bits, block_size=BLOCK, accuracy_level=accuracy_level))
        nodes.append(helper.make_node("Slice", [f"y{i}", "st", "en", "ax"], [f"s{i}"]))
        prev = f"s{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, K])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


def us_per_matmul(model: bytes, threads: int = 2, runs: int = 200) -> float | None:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - a format this build of ONNX Runtime refuses is reported as such
        return None
    x = np.random.default_rng(1).standard_normal((1, K)).astype(np.float32)
    for _ in range(5):
        sess.run(None, {"x": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t)
    return float(np.median(times)) / CHAIN * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    rows = [(bits, zp, acc) for bits in (4, 8) for zp in ("none", "uint8", "float") for acc in (4, 0)]
    results = {r: us_per_matmul(build(*r, rng)) for r in rows}
    base = results[(4, "none", 4)]
    assert base is not None
    print(f"MatMulNBits {K}x{N}, block {BLOCK}, 2 threads; ratio = time / (4-bit, no zero point, int8 activations)")
    print(f"{'bits':>4} {'zero point':>10} {'activations':>12} {'us/matmul':>10} {'ratio':>7}")
    for (bits, zp, acc), us in results.items():
        act = "int8" if acc == 4 else "float32"
        if us is None:
            print(f"{bits:>4} {zp:>10} {act:>12} {'refused':>10}")
        else:
            print(f"{bits:>4} {zp:>10} {act:>12} {us:10.1f} {us / base:7.1f}x")


if __name__ == "__main__":
    main()
