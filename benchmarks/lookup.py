"""Prompt-lookup decoding against plain greedy decoding, SmolLM2-135M int4, same process.

Three workloads from texts written here (no hub data): extract sentences from a given
passage, rewrite a given code block with a small change (both quote their prompt), and
open-ended chat. For each: decode tokens/s plain and with lookup (the first token's
prefill excluded; rounds interleaved, median), the ratio, the share of drafted tokens
accepted, tokens per pass over the weights, and whether the two outputs are identical.
Goals (issue 19): >= 2.0x on the two quoting workloads, >= 0.97x on chat. Then what a
verification pass costs: one step of M rows (M = 1 .. MAX_DRAFT + 1) at a 200-token
context, against a step of one row, interleaved in the same run.

Run: python benchmarks/lookup.py [--model models/smollm2-135m-int4] [--new-tokens 128] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from edgelm.bench.runner import timed_generation
from edgelm.sampling import SamplingParams

PASSAGE = (
    "The lighthouse at Point Reyes was built in 1870. Its first-order Fresnel lens, made in Paris, was carried "
    "up the cliff in pieces and assembled by hand. The keepers lived in a house above the station and walked down "
    "308 steps every night to light the lamp. Fog covers the point for weeks at a time in summer, and the station "
    "also had a steam whistle that burned a ton of coal a day. In 1975 the Coast Guard replaced the lens with an "
    "automated light, and the old tower became part of a national seashore that anyone can visit.")
CODE = '''def summarize(values):
    count = 0
    total = 0.0
    smallest = None
    largest = None
    for v in values:
        count += 1
        total += v
        if smallest is None or v < smallest:
            smallest = v
        if largest is None or v > largest:
            largest = v
    mean = total / count if count else 0.0
    return {"count": count, "mean": mean, "min": smallest, "max": largest}
'''
WORKLOADS = {
    "extract (quotes the passage)": PASSAGE + "\n\nCopy the passage above exactly, sentence by sentence.",
    "code edit (quotes the code)": "Rename the variable `total` to `running_sum` in this function and print the "
                                   "whole function again:\n\n" + CODE,
    "open-ended chat": "Write a short story about a robot who learns to paint the sea.",
}


def _run(model: Any, prompt: str, new_tokens: int, lookup: bool) -> dict[str, Any]:
    """Decode tokens/s after the first token, the tokens, tokens per pass over the weights
    and the drafts accepted, through bench's timed loop (the runtime's own decode loop)."""
    ids = model.encode([{"role": "user", "content": prompt}])
    r = timed_generation(model, ids, min(new_tokens, model.context - len(ids)), SamplingParams(temperature=0.0),
                         lookup=lookup)
    s = model.lookup_stats
    return {"tps": (len(r["tokens"]) - 1) / r["decode_s"], "tokens": r["tokens"],
            "per_pass": r["tokens_per_pass"], "drafted": s.drafted, "accepted": s.accepted}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="models/smollm2-135m-int4")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import edgelm

    model = edgelm.load(args.model, threads=args.threads, context=2048)
    print(f"{args.model}: {args.new_tokens} new tokens, greedy, {args.rounds} interleaved rounds, "
          f"{args.threads} threads")
    print(f"{'workload':30} {'plain tok/s':>11} {'lookup tok/s':>12} {'ratio':>6} {'accepted':>9} "
          f"{'tok/pass':>8}  identical")
    for name, prompt in WORKLOADS.items():
        _run(model, prompt, 16, False)  # warm-up
        plain, looked = [], []
        for _ in range(args.rounds):
            plain.append(_run(model, prompt, args.new_tokens, False))
            looked.append(_run(model, prompt, args.new_tokens, True))
        p = statistics.median(r["tps"] for r in plain)
        q = statistics.median(r["tps"] for r in looked)
        last = looked[-1]
        same = all(r["tokens"] == plain[0]["tokens"] for r in plain + looked)
        acc = last["accepted"] / last["drafted"] if last["drafted"] else 0.0
        per_pass = last["per_pass"]
        ratios = [b["tps"] / a["tps"] for a, b in zip(plain, looked, strict=True)]
        print(f"{name:30} {p:11.1f} {q:12.1f} {q / p:5.2f}x {acc:8.0%} {per_pass:8.2f}  {'yes' if same else 'NO'}"
              f"   (per-round ratios {min(ratios):.2f}-{max(ratios):.2f})")
    pass_costs(model, args.rounds)


def pass_costs(model: Any, rounds: int) -> None:
    """Seconds of one step of M rows after a 200-token context, median over rounds of 20,
    M interleaved, and the ratio to M = 1."""
    from edgelm.runtime.lookup import MAX_DRAFT

    s = model.session
    ids = (model.encode("The history of the lighthouse begins in the ancient world. ") * 40)[:200]
    times: dict[int, list[float]] = {}
    for _ in range(rounds):
        for m in range(1, MAX_DRAFT + 2):
            model.reset()
            s.step(ids, copy=False)
            t = time.perf_counter()
            for _ in range(20):
                s.step(list(range(100, 100 + m)), copy=False, rows=m)
                s.rewind(200)
            times.setdefault(m, []).append((time.perf_counter() - t) / 20)
    one = statistics.median(times[1])
    print("one pass of M rows against a one-row step: " + ", ".join(
        f"M={m} {statistics.median(v) * 1e3:.2f} ms ({statistics.median(v) / one:.2f}x)" for m, v in times.items()))


if __name__ == "__main__":
    main()
