"""Model folders side by side: time to first token and decode tokens/s through the edgelm
runtime, all folders loaded in one process and run in interleaved rounds (this VM's
speed drifts between runs, so only a same-run ratio is a claim). Prints each folder's
median and range and its ratio to the last folder (the baseline).

Run: python benchmarks/compare_folders.py FOLDER... BASELINE [--rounds 5] [--threads 2]
e.g. the same weights through BlockQuantMatMul and MatMulNBits:
  edgelm export smollm2-135m -o /tmp/int4-mlas --kernel matmulnbits
  python benchmarks/compare_folders.py models/smollm2-135m-int4 /tmp/int4-mlas
"""

from __future__ import annotations

import argparse
import statistics

from generate import chat_prompt, run_once

import edgelm
from edgelm.sampling import SamplingParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="model folders; the last is the baseline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    args = ap.parse_args()
    models = {f: edgelm.load(f, threads=args.threads, context=args.prompt_tokens + args.new_tokens + 32)
              for f in args.folders}
    ids = chat_prompt(next(iter(models.values())), args.prompt_tokens)
    greedy = SamplingParams(temperature=0.0)
    runs: dict[str, list[tuple[float, float]]] = {f: [] for f in models}
    for _ in range(args.rounds):
        for f, m in models.items():
            run_once(m, ids, 16, greedy)  # warm-up in this round's turn
            ttft, tps, _ = run_once(m, ids, args.new_tokens, greedy)
            runs[f].append((ttft, tps))
    base = args.folders[-1]
    base_ttft = statistics.median(r[0] for r in runs[base])
    base_tps = statistics.median(r[1] for r in runs[base])
    print(f"{args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, greedy, {args.threads} threads, "
          f"{args.rounds} interleaved rounds")
    print(f"{'folder':40}{'TTFT ms':>9}{'decode tok/s (min-max)':>26}{'decode vs base':>16}{'TTFT vs base':>14}")
    for f, r in runs.items():
        ttft, tps = statistics.median(x[0] for x in r), statistics.median(x[1] for x in r)
        span = f"{tps:.1f} ({min(x[1] for x in r):.1f}-{max(x[1] for x in r):.1f})"
        print(f"{f:40}{ttft * 1000:9.0f}{span:>26}{tps / base_tps:15.2f}x{base_ttft / ttft:13.2f}x")


if __name__ == "__main__":
    main()
