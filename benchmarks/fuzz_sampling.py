"""Fuzz the sampling kernels: hostile logits and parameters, each chunk in a child process.

    python benchmarks/fuzz_sampling.py --vectors 1000000 [--chunk 20000] [--jobs 2] [--json]

Prints how many vectors ran, how many crashed a child (a signal: the kernel wrote or read
out of bounds), and how many gave a wrong outcome (a token outside the kept set, NaN or
+inf in the processed logits, a token from NaN or all -inf logits, greedy other than
argmax, an error on a valid vector). The goal is ``1000000 vectors, 0 crashes, 0 wrong``.
The cases are those of :mod:`edgelm.fuzz`: seeded, the same on every machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CHILD = ("import json, sys; from edgelm.fuzz import fuzz; r = fuzz(int(sys.argv[1]), int(sys.argv[2])); "
         "print(json.dumps({'vectors': r.vectors, 'errors': r.errors, 'rejected': r.rejected, "
         "'wrong': r.wrong_draws, 'examples': r.wrong}))")


def run_chunk(start: int, count: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(count), str(start)], capture_output=True, text=True)
    if proc.returncode != 0:
        why = f"signal {-proc.returncode}" if proc.returncode < 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"vectors": count, "errors": 0, "rejected": 0, "wrong": 0, "crashed": 1,
                "examples": [f"cases {start}..{start + count - 1}: child died ({why})"]}
    out = json.loads(proc.stdout)
    out["crashed"] = 0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--start", type=int, default=0, help="first case seed")
    ap.add_argument("--chunk", type=int, default=20_000, help="cases per child process")
    ap.add_argument("--jobs", type=int, default=2, help="child processes at once")
    ap.add_argument("--json", action="store_true", help="print the totals as JSON")
    args = ap.parse_args(argv)
    if args.vectors < 1 or args.chunk < 1 or args.jobs < 1:
        ap.error("--vectors, --chunk and --jobs must be >= 1")
    starts = range(args.start, args.start + args.vectors, args.chunk)
    t0 = time.perf_counter()
    totals = {"vectors": 0, "errors": 0, "rejected": 0, "wrong": 0, "crashed": 0}
    examples: list[str] = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_chunk, s, min(args.chunk, args.start + args.vectors - s)) for s in starts]
        for f in futures:
            r = f.result()
            for k in totals:
                totals[k] += r[k]
            examples += r["examples"]
            if not args.json:
                print(f"\r{totals['vectors']:,}/{args.vectors:,} vectors", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps({**totals, "seconds": round(seconds, 1), "examples": examples[:20]}))
    else:
        print(file=sys.stderr)
        print(f"{totals['vectors']:,} vectors, {totals['crashed']} crashes, {totals['wrong']} wrong draws "
              f"({totals['errors']:,} clear errors, {totals['rejected']:,} parameter sets refused; {seconds:.0f} s)")
        for e in examples[:20]:
            print("  " + e)
    return 0 if totals["crashed"] == 0 and totals["wrong"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
