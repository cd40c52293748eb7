"""Two builds of edgelm's operator library (``edgelm._ortops``) on one model folder, side
by side in one process: decode tokens/s of each (median of interleaved rounds), the
ratio B/A, and whether both produced the same greedy tokens.

How kernel changes are judged here: build the baseline, copy its shared library aside
(``cp edgelm/_ortops*.so /tmp/a.so``), build the change, copy it too, then

Run: python benchmarks/compare_builds.py /tmp/a.so /tmp/b.so [--model models/smollm2-135m-int4]
     [--rounds 8] [--prompt-tokens 128] [--new-tokens 128] [--threads 2] [--sequences N | --lookup]

``--sequences N`` times N samples decoded in parallel (temperature 0.8, seed 0: the
aggregate tokens/s; a multi-row kernel change shows here), ``--lookup`` greedy decoding
with prompt lookup (verification passes of several rows).

Each library is registered with its own session (ONNX Runtime loads both: the files
differ), so both sessions see the same machine state, round by round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import edgelm
from edgelm.bench.runner import timed_generation, timed_parallel
from edgelm.runtime import ortops
from edgelm.sampling import SamplingParams

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import chat_prompt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="baseline operator library (.so)")
    ap.add_argument("b", help="changed operator library (.so)")
    ap.add_argument("--model", default="models/smollm2-135m-int4")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sequences", type=int, default=1)
    ap.add_argument("--lookup", action="store_true")
    args = ap.parse_args()
    for lib in (args.a, args.b):
        if not Path(lib).is_file():
            sys.exit(f"compare_builds: {lib}: no such library")
    models = []
    for lib in (args.a, args.b):
        ortops.library_path = lambda lib=lib: lib  # the session registers this build
        models.append(edgelm.load(args.model, threads=args.threads, sequences=args.sequences,
                                  context=args.prompt_tokens + args.new_tokens + 8))
    prompt = chat_prompt(models[0], args.prompt_tokens)
    n = args.sequences
    params = SamplingParams(temperature=0.0) if n == 1 else SamplingParams(temperature=0.8, seed=0)

    def run(m: edgelm.runtime.Model, new_tokens: int) -> dict:
        if n > 1:
            return timed_parallel(m, prompt, new_tokens, params, n)
        return timed_generation(m, prompt, new_tokens, params, lookup=args.lookup)

    for m in models:
        run(m, 16)  # warm-up
    speeds: list[list[float]] = [[], []]
    tokens: list[list[int]] = [[], []]
    for _ in range(args.rounds):
        for i, m in enumerate(models):
            r = run(m, args.new_tokens)
            speeds[i].append(n * (args.new_tokens - 1) / r["decode_s"])
            tokens[i] = r["tokens"]
    a, b = statistics.median(speeds[0]), statistics.median(speeds[1])
    ratios = [y / x for x, y in zip(*speeds, strict=True)]
    mode = f"{n} sequences, aggregate " if n > 1 else ("prompt lookup, " if args.lookup else "")
    print(f"{mode}decode tok/s median of {args.rounds} interleaved rounds: A {a:.1f}  B {b:.1f}  B/A {b / a:.3f} "
          f"(per round {min(ratios):.3f}-{max(ratios):.3f})  "
          f"same tokens: {tokens[0] == tokens[1]}")


if __name__ == "__main__":
    main()
