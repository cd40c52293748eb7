"""The memory model's estimate next to the peak RSS measured by running the edgelm
runtime (a 128-token prompt and 16 decode steps), for model folders at two contexts.

Run: python benchmarks/memory_model.py models/smollm2-135m-int4 [more folders] [--contexts 512 2048]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from edgelm.manifest import read_manifest
from edgelm.profiler.memory import estimate_memory

MEASURE = r"""
import sys
import edgelm
m = edgelm.load(sys.argv[1], threads=2, context=int(sys.argv[2]))
prompt = m.encode("Once upon a time, in a village by the sea, " * 20)[:128]
m.session.step(prompt)
for _ in range(16):
    m.session.step([1])
with open("/proc/self/status") as f:
    print(next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM")))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--contexts", type=int, nargs="+", default=[512, 2048])
    args = ap.parse_args()
    print(f"{'model':34} {'context':>7} {'estimate MB':>12} {'measured MB':>12} {'error':>7}")
    for folder in args.folders:
        m = read_manifest(folder)
        for ctx in args.contexts:
            measured = int(subprocess.run([sys.executable, "-c", MEASURE, folder, str(ctx)], check=True,
                                          capture_output=True, text=True).stdout)
            est = estimate_memory(m.architecture, m.quantization.mode, context=ctx,
                                  weights_bytes=m.weights_bytes["total"],
                                  tokenizer_json_bytes=(Path(folder) / "tokenizer.json").stat().st_size)
            err = (est.peak_bytes - measured) / measured
            print(f"{Path(folder).name:34} {ctx:7} {est.peak_bytes / 1e6:12.1f} {measured / 1e6:12.1f} {err:+7.1%}")


if __name__ == "__main__":
    main()
