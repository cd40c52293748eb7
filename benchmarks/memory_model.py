"""The memory model's estimate next to the peak RSS measured by running the edgelm
runtime (a 128-token prompt and 16 decode steps), for model folders at two contexts.

Run: python benchmarks/memory_model.py models/smollm2-135m-int4 [more folders] [--contexts 512 2048]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgelm.manifest import read_manifest
from edgelm.profiler.memory import estimate_memory, measure_peak_rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    args = ap.parse_args()
    print(f"{'model':34} {'context':>7} {'estimate MB':>12} {'measured MB':>12} {'error':>7}")
    for folder in args.folders:
        m = read_manifest(folder)
        for ctx in args.contexts:
            measured = measure_peak_rss(folder, ctx)
            est = estimate_memory(m.architecture, m.quantization.mode, context=ctx,
                                  weights_bytes=m.weights_bytes["total"],
                                  tokenizer_json_bytes=(Path(folder) / "tokenizer.json").stat().st_size,
                                  linear_kernel=m.quantization.linear_kernel, kv_dtype=m.kv_dtype.value)
            err = (est.peak_bytes - measured) / measured
            print(f"{Path(folder).name:34} {ctx:7} {est.peak_bytes / 1e6:12.1f} {measured / 1e6:12.1f} {err:+7.1%}")


if __name__ == "__main__":
    main()
