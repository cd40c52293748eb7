"""Instructions per decode step (or per prompt token) on aarch64, counted under emulation:
edgelm's operators (NEON, dotprod and i8mm paths) against stock ONNX Runtime's MatMulNBits
on the same SmolLM2 int4 weights, in the same run.

Emulated time says nothing about Arm speed, but the instructions a step executes are the
same on an emulated core as on a real one (the same binary, the same inputs): a qemu plugin
(benchmarks/qemu/icount.c) counts every guest instruction the process executes. Each
configuration runs W and W + N greedy decode steps after the same prefill; the difference
over N is the work of one step (graph, operators, sampling and the Python loop), with load
and start-up cancelled. One thread, so no pool thread spins. With --prefill-tokens P the
same is done for the prompt: prompts of 16 and 16 + P tokens, one new token each, the
difference over P being the work of one prompt token (prefill runs four activation rows
at a time by SMMLA at the i8mm level).

    bash scripts/arm.sh --setup-only                  # the sysroot, wheels, cross build
    python benchmarks/arm_instructions.py [--steps 8] [--json]
    python benchmarks/arm_instructions.py --prefill-tokens 48

Prints instructions per step per configuration and the ratio to MatMulNBits. Goal of the
ARM issue: edgelm's dotprod path <= MatMulNBits' instructions per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("EDGELM_ARM_CACHE", Path.home() / ".cache" / "edgelm-arm"))
PLUGIN_SRC = Path(__file__).resolve().parent / "qemu" / "icount.c"
PROMPT = "What is the capital of France? Answer in one sentence."

GUEST = """
import sys
import edgelm
from edgelm.bench.runner import timed_generation
from edgelm.sampling import SamplingParams
model = edgelm.load(sys.argv[1], threads=1, context=192)
prompt = model.encode([{"role": "user", "content": sys.argv[3]}])
if int(sys.argv[4]):  # a prompt of exactly this many tokens
    prompt = (list(prompt) * (int(sys.argv[4]) // len(prompt) + 1))[: int(sys.argv[4])]
timed_generation(model, prompt, int(sys.argv[2]), SamplingParams(temperature=0.0))
"""


def _host(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), *args], check=True, env=env, cwd=ROOT)


def _folder(kernel: str) -> Path:
    from edgelm.errors import ManifestError
    from edgelm.manifest import read_manifest

    out = CACHE / f"smollm2-135m-int4-{kernel}"
    try:
        read_manifest(out)  # a folder an older edgelm wrote is exported again
    except ManifestError:
        print(f"exporting SmolLM2-135M int4 with --kernel {kernel} on the host", file=sys.stderr)
        _host("-m", "edgelm.cli", "export", "smollm2-135m", "-o", str(out), "--quant", "int4", "--kernel", kernel,
              "--force", "-q")
    return out


def _count(plugin: Path, folder: Path, steps: int, isa: str, prompt_tokens: int = 0) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "count"
        env = dict(os.environ, EDGELM_QEMU_ARGS=f"-plugin {plugin},out={out}", EDGELM_ORTOPS_ISA=isa,
                   PYTHONPATH=f"{CACHE / 'stage'}:{CACHE / 'site'}", PYTHONNOUSERSITE="1")
        subprocess.run([str(CACHE / "python-arm"), "-c", GUEST, str(folder), str(steps), PROMPT, str(prompt_tokens)], check=True, env=env,
                       cwd=CACHE / "stage", stdout=subprocess.DEVNULL)
        return int(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="decode steps measured (N)")
    ap.add_argument("--warmup-steps", type=int, default=2, help="decode steps of the baseline run (W)")
    ap.add_argument("--prefill-tokens", type=int, default=0,
                    help="count per prompt token instead, over this many prompt tokens (P)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 0 or not 0 <= args.prefill_tokens <= 160:
        print("--steps must be >= 1, --warmup-steps >= 0, --prefill-tokens 0 to 160", file=sys.stderr)
        return 2
    if not (CACHE / "python-arm").exists() or not (CACHE / "stage" / "edgelm").is_dir():
        print(f"no aarch64 sysroot in {CACHE}: run `bash scripts/arm.sh --setup-only` first", file=sys.stderr)
        return 2
    plugin = CACHE / "libicount.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(plugin), str(PLUGIN_SRC)],
                   check=True)
    prefill = args.prefill_tokens > 0
    unit = "prompt token" if prefill else "decode step"
    configs = [("edgelm BlockQuantMatMul, i8mm", "edgelm", "i8mm"),
               ("edgelm BlockQuantMatMul, dotprod", "edgelm", "dotprod"),
               ("edgelm BlockQuantMatMul, NEON", "edgelm", "neon"),
               ("edgelm BlockQuantMatMul, portable C", "edgelm", "portable"),
               ("ONNX Runtime MatMulNBits (stock)", "matmulnbits", "i8mm")]
    if prefill:  # the portable prefill is what emulation makes slowest, and no level's baseline
        configs = [c for c in configs if c[2] != "portable"]
    rows = []
    for label, kernel, isa in configs:
        folder = _folder(kernel)
        if prefill:
            base = _count(plugin, folder, 1, isa, 16)
            more = _count(plugin, folder, 1, isa, 16 + args.prefill_tokens)
            per = (more - base) / args.prefill_tokens
        else:
            base = _count(plugin, folder, args.warmup_steps + 1, isa)
            more = _count(plugin, folder, args.warmup_steps + 1 + args.steps, isa)
            per = (more - base) / args.steps
        rows.append({"config": label, "isa": isa, "instructions_per_" + unit.replace(" ", "_"): per})
        print(f"  {label:38} {per / 1e6:9.2f} M instructions / {unit}", file=sys.stderr)
    key = "instructions_per_" + unit.replace(" ", "_")
    ref = rows[-1][key]
    for r in rows:
        r["ratio_to_matmulnbits"] = r[key] / ref
    measured = f"{args.prefill_tokens} prompt tokens" if prefill else f"{args.steps} decode steps"
    if args.json:
        print(json.dumps({"measured": measured, "model": "SmolLM2-135M int4", "cpu": "qemu-aarch64 -cpu max",
                          "threads": 1, "rows": rows}, indent=2))
    else:
        print(f"SmolLM2-135M int4, one thread, qemu-aarch64 -cpu max; {measured} measured")
        head = "M instr/token" if prefill else "M instr/step"
        print(f"{'configuration':40} {head:>13} {'vs MatMulNBits':>15}")
        for r in rows:
            print(f"{r['config']:40} {r[key] / 1e6:13.2f} {r['ratio_to_matmulnbits']:15.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
