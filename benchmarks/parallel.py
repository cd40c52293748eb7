"""Parallel samples against one sample at a time, SmolLM2-135M int4, same process.

For n = 1, 2, 4, 8 samples of one chat prompt (temperature 0.8, every sample runs the
whole budget: end-of-sequence does not stop it), through bench's timed loops (the
runtime's own decode loops): the decode tokens/s of all n together (one pass over the
weights per step for all of them), against n lone runs of the same samples (n lone runs
take n times one run's time, so the ratio is the aggregate speed over one lone run's
speed), and whether each parallel sample is its lone run
token for token (with n <= 7 every step stays on the decode kernels, which give each row
its lone bits; from 8 rows the prefill kernels compute in float, so samples agree only
until a draw falls between the two roundings). The prompt is computed once for the n
samples: time to first token is printed as well. Rounds interleave the configurations;
medians and the per-round range.

Run: python benchmarks/parallel.py [--model models/smollm2-135m-int4] [--new-tokens 64] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from typing import Any

from edgelm.bench.runner import timed_generation, timed_parallel
from edgelm.sampling import SamplingParams

PROMPT = "Give three short ideas for a weekend project with a Raspberry Pi, one sentence each."
COUNTS = (1, 2, 4, 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="models/smollm2-135m-int4")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    args = ap.parse_args()
    import edgelm

    model = edgelm.load(args.model, threads=args.threads, context=512, sequences=max(args.counts))
    ids = model.encode([{"role": "user", "content": PROMPT}])
    params = SamplingParams(temperature=0.8, top_p=0.95, seed=0)
    print(f"{args.model}: {len(ids)}-token prompt, {args.new_tokens} new tokens a sample, temperature 0.8, "
          f"{args.rounds} interleaved rounds, {args.threads} threads")
    lone: list[dict[str, Any]] = []
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.counts}
    timed_generation(model, ids, 8, params)  # warm-up
    for _ in range(args.rounds):
        lone.append(timed_generation(model, ids, args.new_tokens, params))
        for n in args.counts:
            if n > 1:
                runs[n].append(timed_parallel(model, ids, args.new_tokens, params, n))
    # Each sample's lone run (seed + i), once, for the token-for-token check.
    want = [timed_generation(model, ids, args.new_tokens, dataclasses.replace(params, seed=i))["tokens"]
            for i in range(max(args.counts))]
    one_tps = statistics.median((args.new_tokens - 1) / r["decode_s"] for r in lone)
    one_ttft = statistics.median(r["ttft_s"] for r in lone) * 1e3
    print(f"{'n':>3} {'aggregate tok/s':>16} {'per sample':>11} {'vs n lone runs':>15} {'TTFT ms':>8}  "
          f"samples equal to their lone runs")
    print(f"{1:3d} {one_tps:16.1f} {one_tps:11.1f} {1.0:14.2f}x {one_ttft:8.1f}  yes (it is the lone run)")
    for n in args.counts:
        if n == 1:
            continue
        tps = [n * (args.new_tokens - 1) / r["decode_s"] for r in runs[n]]
        ratios = [t / ((args.new_tokens - 1) / a["decode_s"]) for t, a in zip(tps, lone, strict=True)]
        agg = statistics.median(tps)
        ttft = statistics.median(r["ttft_s"] for r in runs[n]) * 1e3
        same = sum(toks == want[i] for i, toks in enumerate(runs[n][-1]["tokens"]))
        print(f"{n:3d} {agg:16.1f} {agg / n:11.1f} {agg / one_tps:14.2f}x {ttft:8.1f}  {same} of {n}"
              f"   (per-round ratios {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
