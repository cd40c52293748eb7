"""``edgelm quickstart``: the whole product on the default model in one command.

Exports SmolLM2-135M to int4 (or reuses the folder), answers one chat question, benchmarks
it here, profiles it against three phones, plans a day of use, and writes a report
folder (``report.md`` with the tables, and the figures).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

__all__ = ["quickstart"]

PHONES = ["pixel-8-pro", "iphone-15-pro", "galaxy-a15"]
QUESTION = "What is the capital of France?"
TOKENS_PER_DAY = 20000
REPORT_TITLE = "# edgelm quickstart report"


def _say(msg: str) -> None:
    print(f"[quickstart] {msg}", file=sys.stderr, flush=True)


def _adopt_old_report(report_dir: Path) -> None:
    """A report folder from an edgelm before the output marker existed (its report.md opens
    with the quickstart's title) gets the marker, so quickstart keeps replacing it."""
    from ._io import OUTPUT_MARKER, written_by_edgelm

    report = report_dir / "report.md"
    if report_dir.is_dir() and not report_dir.is_symlink() and not written_by_edgelm(report_dir) and report.is_file():
        with open(report, encoding="utf-8", errors="replace") as f:
            if f.readline().strip() == REPORT_TITLE:
                (report_dir / OUTPUT_MARKER).write_text("written by edgelm; edgelm --force may replace this folder\n")


def quickstart(model_dir: Path | str = "models/smollm2-135m-int4", report_dir: Path | str = "reports/quickstart",
               threads: int | None = None) -> Path:
    from ._io import atomic_dir, check_output_folder
    from .bench import ResultsStore, bench, format_bench
    from .errors import EdgeLMError
    from .manifest import MANIFEST_NAME, read_manifest
    from .plan.figures import plot_devices, plot_sweep, sweep
    from .plan.planner import format_plan, plan
    from .profiler.devices import get_profile
    from .profiler.report import format_report, profile_model
    from .runtime import load

    model_dir, report_dir = Path(model_dir), Path(report_dir)
    _adopt_old_report(report_dir)
    check_output_folder(report_dir, force=True)  # before minutes of work: replaced only if edgelm wrote it
    stale = None
    reuse = (model_dir / MANIFEST_NAME).exists()
    if reuse:
        try:
            read_manifest(model_dir)
        except EdgeLMError as e:
            stale, reuse = str(e), False
    if reuse:
        _say(f"reusing {model_dir}")
    else:
        if stale is not None:
            # A folder from an older edgelm (an earlier checkout): replace it rather than stop.
            _say(f"{model_dir} cannot be reused ({stale.split(';')[0]}); exporting it again")
        else:
            _say(f"exporting smollm2-135m to {model_dir} (about 1-2 minutes)")
        # In a child process: export loads PyTorch, whose memory would otherwise stay in
        # this process and count in the benchmark's RSS below.
        cmd = [sys.executable, "-m", "edgelm.cli", "export", "smollm2-135m", "-o", str(model_dir), "--quant", "int4"]
        if stale is not None:
            cmd.append("--force")
        if threads:
            cmd += ["--threads", str(threads)]
        if subprocess.run(cmd).returncode != 0:
            raise EdgeLMError("exporting smollm2-135m failed (see the message above)")
    # The benchmark runs before anything else loads a model in this process: memory a
    # session frees is not all returned to the OS, and it would count in the peak RSS.
    _say("benchmarking here (1 warm-up + 5 runs)")
    store = ResultsStore()
    store.check_writable()
    record = store.append(bench(model_dir, threads=threads))
    bench_text = format_bench(record)
    model = load(model_dir, threads=threads, context=1024)
    _say(f"asking: {QUESTION}")
    answer = model.generate([{"role": "user", "content": QUESTION}], max_new_tokens=48)
    print(f"\n> {QUESTION}\n{answer}\n")
    print(bench_text)
    profiles = [format_report(profile_model(str(model_dir), p, context=2048)) for p in PHONES]
    for text in profiles:
        print("\n" + text)
    plans = [plan(p, model=str(model_dir), tokens_per_day=TOKENS_PER_DAY) for p in PHONES]
    with atomic_dir(report_dir, force=True, marker=True) as tmp:
        figures = plot_sweep(sweep(get_profile(PHONES[0]), TOKENS_PER_DAY, 2048, 0.1, 10.0), get_profile(PHONES[0]),
                             tmp / f"battery-vs-params-{PHONES[0]}")
        figures += plot_devices(str(model_dir), None, None, TOKENS_PER_DAY, 2048, 0.1, tmp / "devices")
        md = [REPORT_TITLE, "",
              f"Model: `{model_dir}` (SmolLM2-135M-Instruct, int4).", "",
              "## Chat", "", f"> {QUESTION}", "", answer, "",
              "## Benchmark on this machine", "", "```", bench_text, "```", "",
              "## Estimated on phones", ""]
        md += ["```\n" + t + "\n```\n" for t in profiles]
        md += [f"## Plan: {TOKENS_PER_DAY:,} tokens a day", ""]
        md += ["```\n" + format_plan(p) + "\n```\n" for p in plans]
        md += ["## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures if f.suffix == ".png"]
        (tmp / "report.md").write_text("\n".join(md) + "\n")
        (tmp / "bench.json").write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    path = report_dir.absolute()
    print(f"\nreport: {path / 'report.md'}")
    return path
