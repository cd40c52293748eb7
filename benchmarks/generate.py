"""Time to first token, decode tokens/s and the share of each token spent sampling,
for a model folder, through the edgelm runtime (median of 5 runs after a warm-up).

Run: python benchmarks/generate.py models/smollm2-135m-int4 [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import edgelm
from edgelm.bench.runner import timed_generation
from edgelm.sampling import SamplingParams


def run_once(model: edgelm.runtime.Model, prompt_ids: list[int], new_tokens: int,  # type: ignore[name-defined]
             params: SamplingParams) -> tuple[float, float, float]:
    """(time to first token s, decode tokens/s, sampling share of decode time)."""
    r = timed_generation(model, prompt_ids, new_tokens, params)
    return r["ttft_s"], (new_tokens - 1) / r["decode_s"], r["sample_s"] / r["decode_s"]


def chat_prompt(model: edgelm.runtime.Model, n: int) -> list[int]:  # type: ignore[name-defined]
    """An n-token prompt: a chat turn asking for a long story, repeated to length."""
    base = model.encode([{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}])
    return (base * (1 + n // len(base)))[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    model = edgelm.load(args.model, threads=args.threads, context=args.prompt_tokens + args.new_tokens + 8)
    prompt = chat_prompt(model, args.prompt_tokens)
    for label, params in [("greedy", SamplingParams(temperature=0.0)),
                          ("sampled (rep 1.1, T 0.8, top-k 50, top-p 0.9)",
                           SamplingParams(temperature=0.8, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=0))]:
        run_once(model, prompt, 16, params)  # warm-up
        runs = [run_once(model, prompt, args.new_tokens, params) for _ in range(args.runs)]
        ttft = statistics.median(r[0] for r in runs) * 1e3
        tps = statistics.median(r[1] for r in runs)
        share = statistics.median(r[2] for r in runs) * 100
        print(f"{label:48} ttft {ttft:7.1f} ms  decode {tps:6.1f} tok/s  sampling {share:4.2f}% of decode "
              f"(goal < 2%)")


if __name__ == "__main__":
    main()
