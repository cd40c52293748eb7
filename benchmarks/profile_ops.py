"""Where decode time goes: ONNX Runtime's profiler over N decode steps of a model folder,
aggregated by operator type (share of kernel time, calls per token, us per call).

Run: python benchmarks/profile_ops.py models/smollm2-135m-int4 [--steps 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgelm.manifest import read_manifest
from edgelm.runtime import ortops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    folder = Path(args.model)
    m = read_manifest(folder)
    a = m.architecture
    so = ort.SessionOptions()
    ortops.register(so)  # edgelm's BlockQuantMatMul, for folders that use it
    so.intra_op_num_threads = args.threads
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "edgelm")
    sess = ort.InferenceSession(str(folder / m.model_file), so, providers=["CPUExecutionProvider"])
    ctx = 256
    kv_type = np.float16 if m.kv_dtype.value == "float16" else np.float32
    kv = {f"past_key_values.{i}.{k}": np.zeros((1, a.num_kv_heads, ctx, a.head_dim), kv_type)
          for i in range(a.num_layers) for k in ("key", "value")}
    binding = sess.io_binding()
    caches = {}
    for name, arr in kv.items():
        v = ort.OrtValue.ortvalue_from_numpy(arr)
        caches[name] = v
        binding.bind_ortvalue_input(name, v)
        binding.bind_ortvalue_output(name.replace("past_key_values", "present"), v)
    binding.bind_output("logits")
    binding.bind_cpu_input(m.io.logits_rows, np.array([1], np.int64))
    t0 = time.perf_counter()
    for step in range(args.steps):
        binding.bind_cpu_input("input_ids", np.array([[1 + step]], np.int64))
        binding.bind_cpu_input("seqlens_k", np.array([step], np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(step + 1, np.int32))
        sess.run_with_iobinding(binding)
    wall = (time.perf_counter() - t0) / args.steps
    trace = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, list[float]] = collections.defaultdict(list)
    for ev in trace:
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            per_op[ev["args"]["op_name"]].append(ev["dur"])
    total = sum(sum(v) for v in per_op.values())
    print(f"{args.steps} decode steps, {wall * 1e3:.2f} ms per token wall, "
          f"{total / args.steps / 1e3:.2f} ms per token in kernels")
    print(f"{'op':34} {'share':>7} {'calls/token':>12} {'us/call':>8}")
    for op, durs in sorted(per_op.items(), key=lambda kv: -sum(kv[1])):
        print(f"{op:34} {sum(durs) / total:7.1%} {len(durs) / args.steps:12.0f} {np.mean(durs):8.1f}")


if __name__ == "__main__":
    main()
