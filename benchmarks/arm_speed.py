"""Decode and prefill speed on an aarch64 board or phone: edgelm's operators against stock ONNX
Runtime's MatMulNBits (KleidiAI on Arm) on the same SmolLM2 int4 weights, and llama.cpp Q4_0
when a GGUF file is given; all in one process, interleaved rounds, the same threads.

Run natively on the Arm machine (emulated time means nothing):

    python benchmarks/arm_speed.py --edgelm DIR --matmulnbits DIR [--gguf SmolLM2-Q4_0.gguf]
        [--threads 4] [--rounds 5] [--prompt-tokens 128] [--new-tokens 128] [--json]

The two folders come from `edgelm export smollm2-135m -o DIR --quant int4` with
`--kernel edgelm` (the default) and `--kernel matmulnbits`, made on any machine with the
export extra and copied over; without them this script exports them here. Prints each
system's median decode and prefill tokens/s with its range, edgelm's ratios (goal on real
hardware: >= 1.2x MatMulNBits and >= 1.0x llama.cpp Q4_0 decode), and the roofline share:
bytes read per token x tokens/s over this machine's measured read bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import chat_prompt, run_once  # noqa: E402

import edgelm  # noqa: E402
from edgelm.manifest import read_manifest  # noqa: E402
from edgelm.profiler.energy import bytes_per_token  # noqa: E402
from edgelm.runtime import ortops  # noqa: E402
from edgelm.sampling import SamplingParams  # noqa: E402


def read_bandwidth_bps(megabytes: int = 512, repeats: int = 3) -> float:
    """Sustained read bandwidth: the best of a few sums over an array far larger than any cache."""
    a = np.ones(megabytes * (1 << 20) // 8, np.float64)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def _export(kernel: str, out: Path) -> Path:
    from edgelm.export import ExportConfig, export

    if not (out / "edgelm.json").exists():
        print(f"exporting SmolLM2-135M int4 (--kernel {kernel}) to {out}", file=sys.stderr)
        export("smollm2-135m", out, ExportConfig(quant="int4", kernel=kernel, progress=False))
    return out


class LlamaCppQ4:
    """llama.cpp through llama-cpp-python: greedy, the last position's logits only."""

    def __init__(self, gguf: str, threads: int, context: int) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=gguf, n_ctx=context, n_threads=threads, n_threads_batch=threads,
                                   logits_all=False, verbose=False)
        self.lib = llama_cpp

    def run(self, prompt: list[int], new_tokens: int) -> tuple[float, float]:
        llm = self.llm
        llm.reset()
        vocab = llm.n_vocab()
        t0 = time.perf_counter()
        llm.eval(prompt)
        tok = int(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(vocab,)).argmax())
        t1 = time.perf_counter()
        for _ in range(new_tokens - 1):
            llm.eval([tok])
            tok = int(np.ctypeslib.as_array(self.lib.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(vocab,)).argmax())
        return t1 - t0, (new_tokens - 1) / (time.perf_counter() - t1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edgelm", type=Path, help="SmolLM2 int4 folder exported with --kernel edgelm")
    ap.add_argument("--matmulnbits", type=Path, help="the same weights exported with --kernel matmulnbits")
    ap.add_argument("--gguf", help="a SmolLM2-135M Q4_0 GGUF file for llama.cpp (needs llama-cpp-python)")
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--any-cpu", action="store_true", help="run on a CPU that is not aarch64 too")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if platform.machine().lower() not in ("aarch64", "arm64") and not args.any_cpu:
        print("arm_speed.py measures Arm CPUs: run it on one (or pass --any-cpu)", file=sys.stderr)
        return 2
    cache = Path.home() / ".cache" / "edgelm"
    folders = {"edgelm": args.edgelm or _export("edgelm", cache / "arm-speed-edgelm"),
               "matmulnbits": args.matmulnbits or _export("matmulnbits", cache / "arm-speed-matmulnbits")}
    context = args.prompt_tokens + args.new_tokens + 32
    models = {name: edgelm.load(f, threads=args.threads, context=context) for name, f in folders.items()}
    ids = chat_prompt(models["edgelm"], args.prompt_tokens)
    llama = LlamaCppQ4(args.gguf, args.threads, context) if args.gguf else None
    greedy = SamplingParams(temperature=0.0)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in [*models, *(["llama.cpp Q4_0"] if llama else [])]}
    for _ in range(args.rounds):
        for name, m in models.items():
            run_once(m, ids, 16, greedy)
            ttft, tps, _ = run_once(m, ids, args.new_tokens, greedy)
            runs[name].append((args.prompt_tokens / ttft, tps))
        if llama is not None:
            llama.run(ids, 16)
            runs["llama.cpp Q4_0"].append(tuple(  # type: ignore[arg-type]
                (args.prompt_tokens / r if i == 0 else r) for i, r in enumerate(llama.run(ids, args.new_tokens))))
    bandwidth = read_bandwidth_bps()
    m = read_manifest(folders["edgelm"])
    per_token = bytes_per_token(m.architecture, m.weights_bytes["total"], args.prompt_tokens + args.new_tokens // 2,
                                m.kv_dtype)
    rows: list[dict[str, Any]] = []
    for name, r in runs.items():
        decode = statistics.median(x[1] for x in r)
        rows.append({"system": name, "decode_tokens_per_s": decode, "decode_min": min(x[1] for x in r),
                     "decode_max": max(x[1] for x in r), "prefill_tokens_per_s": statistics.median(x[0] for x in r)})
    ref = {row["system"]: row for row in rows}
    out = {"machine": platform.machine(), "operators_isa": ortops.active_isa(), "threads": args.threads,
           "rounds": args.rounds, "read_bandwidth_gbps": bandwidth / 1e9, "bytes_per_token": per_token,
           "edgelm_roofline_share": per_token * ref["edgelm"]["decode_tokens_per_s"] / bandwidth,
           "ratios": {f"edgelm / {name}": {"decode": ref["edgelm"]["decode_tokens_per_s"] / row["decode_tokens_per_s"],
                                          "prefill": ref["edgelm"]["prefill_tokens_per_s"] / row["prefill_tokens_per_s"]}
                      for name, row in ref.items() if name != "edgelm"},
           "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['machine']}, operators at {out['operators_isa']}, {args.threads} threads, {args.rounds} interleaved "
          f"rounds, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, greedy")
    print(f"{'system':20}{'decode tok/s (min-max)':>28}{'prefill tok/s':>15}")
    for row in rows:
        span = f"{row['decode_tokens_per_s']:.1f} ({row['decode_min']:.1f}-{row['decode_max']:.1f})"
        print(f"{row['system']:20}{span:>28}{row['prefill_tokens_per_s']:15.0f}")
    for name, r in out["ratios"].items():
        print(f"{name}: decode {r['decode']:.2f}x, prefill {r['prefill']:.2f}x")
    print(f"roofline: {per_token / 1e6:.1f} MB read per token, {bandwidth / 1e9:.1f} GB/s measured read bandwidth, "
          f"edgelm at {out['edgelm_roofline_share'] * 100:.0f}% of the ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
