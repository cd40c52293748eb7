"""The ``edgelm`` command: one sub-command per user job.

The CLI is thin: each sub-command parses its arguments and calls the Python function
of the same name. An :class:`~edgelm.errors.EdgeLMError` is printed on one line and
exits with status 2; so are a missing optional dependency and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import EdgeLMError
from .manifest import BUILDER_KERNELS

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block): ``edgelm CMD: error: ...``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_in(lo: int, hi: int) -> Any:
    """An argparse type: an integer in [lo, hi], so absurd flags (10^13 tokens, 10^11
    threads) are refused at the command line instead of failing deep inside."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{v} is not in [{lo}, {hi}]")
        return v
    parse.__name__ = "integer"
    return parse


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


_finite.__name__ = "number"
THREADS = _int_in(1, 1024)
TOKENS = _int_in(0, 1 << 22)


def _text(arg: str, what: str) -> str:
    """A command-line string as valid UTF-8 (Python keeps undecodable bytes as surrogates)."""
    try:
        return arg.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        raise EdgeLMError(f"the {what} is not valid UTF-8") from None


def _need_stdout() -> None:
    if sys.stdout is None:
        raise EdgeLMError("standard output is closed: nowhere to write the reply")


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportConfig, export, format_summary

    cfg = ExportConfig(quant=args.quant, verify=not args.no_verify, verify_prompts=args.verify_prompts,
                       force=args.force, accuracy_level=args.accuracy_level, kernel=args.kernel, min_agreement=args.min_agreement, progress=not args.quiet and not args.json, threads=args.threads,
                       via=args.via)
    result = export(args.source, args.output, cfg)
    if args.json:
        print(json.dumps({"folder": str(result.folder), "manifest": result.manifest.to_dict()}, indent=2))
    else:
        print(format_summary(result))
    return 0


def _sampling_from(args: argparse.Namespace) -> Any:
    from .sampling import DRY_BREAKERS, SamplingParams

    breakers: tuple[str, ...] = DRY_BREAKERS
    if args.dry_sequence_breaker is not None:
        texts = [_text(b, "DRY sequence breaker") for b in args.dry_sequence_breaker]
        breakers = () if texts == ["none"] else tuple(texts)
    samplers = None
    if args.samplers is not None:
        samplers = tuple(s.strip() for s in _text(args.samplers, "sampler list").replace(",", ";").split(";")
                         if s.strip())
    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
                          presence_penalty=args.presence_penalty, seed=args.seed,
                          penalty_last_n=None if args.repeat_last_n == -1 else args.repeat_last_n,
                          samplers=samplers, min_keep=args.min_keep, typical_p=args.typical_p,
                          top_n_sigma=args.top_n_sigma, xtc_probability=args.xtc_probability,
                          xtc_threshold=args.xtc_threshold, dry_multiplier=args.dry_multiplier,
                          dry_base=args.dry_base, dry_allowed_length=args.dry_allowed_length,
                          dry_penalty_last_n=None if args.dry_penalty_last_n == -1 else args.dry_penalty_last_n,
                          dry_sequence_breakers=breakers)


def _constraint_from(args: argparse.Namespace) -> Any:
    from .grammar import Constraint

    if args.json_schema:
        return Constraint.from_file(args.json_schema, "json_schema")
    if args.grammar:
        return Constraint.from_file(args.grammar, "grammar")
    if args.regex:
        return Constraint("regex", _text(args.regex, "regular expression"))
    return None


def _tool_call(args: argparse.Namespace, text: str, sampling: Any) -> int:
    from .grammar import GrammarError
    from .runtime import load

    try:
        tools = json.loads(Path(args.tools).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise GrammarError(f"{args.tools}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    except json.JSONDecodeError as e:
        raise GrammarError(f"{args.tools}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    model = load(args.model, threads=args.threads, context=args.context)
    call = model.tool_call([{"role": "user", "content": text}], tools, max_new_tokens=args.max_new_tokens,
                           sampling=sampling)
    print(json.dumps({"name": call.name, "arguments": call.arguments}))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .runtime import load

    _need_stdout()
    text = _text(args.prompt, "prompt")
    stop = [_text(s, "stop string") for s in args.stop or ()]
    sampling = _sampling_from(args)
    if args.tools:
        return _tool_call(args, text, sampling)
    constraint = _constraint_from(args)  # a bad schema file fails before the model loads
    model = load(args.model, threads=args.threads, context=args.context, sequences=args.samples)
    if constraint is not None:
        model.grammars.compile(constraint)  # and one that does not compile, before any output
    prompt: Any = text if args.raw else [{"role": "user", "content": text}]
    if args.raw or model.chat_template is None:
        prompt = text
    if args.samples > 1:
        texts = model.generate(prompt, max_new_tokens=args.max_new_tokens, sampling=sampling, stop=stop,
                               lookup=args.lookup, n=args.samples, grammar=constraint)
        for i, sample in enumerate(texts):
            sys.stdout.write(f"--- sample {i + 1} of {len(texts)} ---\n{sample}\n")
        return 0
    for piece in model.generate(prompt, max_new_tokens=args.max_new_tokens, sampling=sampling,
                                stop=stop, stream=True, lookup=args.lookup, grammar=constraint):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .runtime import load

    model = load(args.model, threads=1, context=1, verify=True)  # the smallest cache: nothing is generated
    m = model.manifest
    out = {"folder": str(args.model), "files": len(m.files), "bytes": m.total_file_bytes(), "sha256": "match",
           "graph": "agrees with the manifest"}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.model}: {len(m.files)} files ({m.total_file_bytes() / 1e6:.1f} MB) match the manifest's sizes "
              "and sha256; the graph agrees with the manifest")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from .runtime import load

    _need_stdout()
    if sys.stdin is None or sys.stdin.closed:
        raise EdgeLMError("standard input is closed: chat reads your messages from it")
    sampling = _sampling_from(args)
    model = load(args.model, threads=args.threads, context=args.context)
    messages: list[dict[str, str]] = []
    print(f"edgelm chat: {args.model} (context {model.context} tokens; empty line or Ctrl-D to quit)",
          file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        except (OSError, ValueError, RuntimeError) as e:  # stdin closed or unreadable under us
            raise EdgeLMError(f"cannot read standard input ({e})") from e
        if not line.strip():
            break
        messages.append({"role": "user", "content": _text(line, "message")})
        reply = []
        for piece in model.generate(messages, max_new_tokens=args.max_new_tokens, sampling=sampling,
                                    stream=True, truncate=True, lookup=args.lookup):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from .profiler.report import compare_shapes, format_report, profile_model

    if args.calibrate:
        from .bench import ResultsStore
        from .bench.calibrate import calibrate
        from .profiler.devices import get_profile

        c = calibrate(get_profile(args.device), ResultsStore(args.store).read())
        if args.json:
            print(json.dumps(c.to_dict(), indent=2))
            return 0
        print(f"calibrated {c.device.id} on {c.runs} measured run(s):")
        print(f"  active power        {c.device.active_power_w:7.2f} W  -> {c.calibrated.active_power_w:7.2f} W")
        print(f"  sustained fraction  {c.device.sustained_fraction:7.2f}    -> {c.calibrated.sustained_fraction:7.2f}")
        print(f"  J/token error       {c.error_before:7.1%}    -> {c.error_after:7.1%}")
        print(f"  decode speed error  {c.speed_error_before:7.1%}    -> {c.speed_error_after:7.1%}")
        return 0
    if args.model is None:
        raise EdgeLMError("give a model folder or preset (or --calibrate)")

    report = profile_model(args.model, args.device, context=args.context, quant=args.quant,
                           app_dram_share=args.app_dram_share)
    if args.json:
        out: dict[str, Any] = report.to_dict()
        if args.compare_shapes:
            out["shapes"] = [r.to_dict() for r in compare_shapes(report.model.arch.parameter_count(), report.device,
                                                                 report.model.quant.value, args.context)]
        print(json.dumps(out, indent=2))
        return 0
    print(format_report(report))
    if args.compare_shapes:
        print("\nsame parameters, other shapes (MobileLLM's comparison):")
        for r in compare_shapes(report.model.arch.parameter_count(), report.device, report.model.quant.value,
                                args.context):
            a = r.model.arch
            print(f"  {r.model.name:30} ffn {a.intermediate_size:5}  {a.parameter_count() / 1e6:6.1f}M  "
                  f"{r.energy.decode_tokens_per_s:7.1f} tok/s  {r.energy.joules_per_token * 1000:6.2f} mJ/token  "
                  f"KV {r.memory.kv_cache_bytes / 1e6:6.1f} MB")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from .profiler.devices import list_profiles

    if args.draft_profile:
        from .devices.android import profile_draft, read_facts
        from .devices.transport import AdbTransport

        print(profile_draft(read_facts(AdbTransport(args.draft_profile), args.draft_profile)), end="")
        return 0
    if not args.profiles:
        from .devices.android import describe_state, discover

        found = discover()
        if args.json:
            print(json.dumps([{"serial": d.serial, "state": d.state, "props": d.props} for d in found], indent=2))
            return 0
        if not found:
            print("no Android device connected (plug one in with USB debugging on, then: adb devices)")
        for d in found:
            print(f"adb:{d.serial:24} {d.model:24} {describe_state(d.state)}")
        print("\n(edgelm devices --profiles lists the device profiles for edgelm profile and plan)")
        return 0
    profiles = list_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2, default=str))
        return 0
    print(f"{'id':20} {'kind':6} {'SoC':28} {'DRAM':>6} {'bandwidth':>10} {'battery':>9}")
    for p in profiles:
        bat = f"{p.battery_wh:.1f} Wh" if p.battery_wh else "-"
        print(f"{p.id:20} {p.kind:6} {p.soc:28} {p.dram_bytes / 1e9:4.0f} GB {p.peak_bandwidth_bps / 1e9:6.1f} GB/s "
              f"{bat:>9}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import ResultsStore, bench, format_bench

    store = ResultsStore(args.store)
    if args.history:
        records = store.read()
        if args.json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
            return 0
        if not records:
            print(f"no runs in {store.path}")
        for r in records:
            print(f"{r.id or '?':>4}  {r.time_utc}  {str(r.model.name)[:28]:28} {r.model.quant:5} "
                  f"{r.device.id:10} {r.ttft_ms:8.1f} ms  {r.decode_tokens_per_s:7.1f} tok/s  "
                  f"{r.peak_rss_bytes / 1e6:7.1f} MB  {r.energy.joules_per_token * 1000:7.2f} mJ/token "
                  f"[{r.energy.source}]")
        return 0
    if args.compare:
        a, b = (store.get(x) for x in args.compare)
        keys = [("ttft_ms", "time to first token (ms)"), ("decode_tokens_per_s", "decode tokens/s"),
                ("peak_rss_bytes", "peak RSS (bytes)"), ("load_s", "load (s)")]
        pairs = [(label, float(getattr(a, k)), float(getattr(b, k))) for k, label in keys]
        pairs.append(("energy (J/token)", a.energy.joules_per_token, b.energy.joules_per_token))
        rows = [(label, va, vb, vb / va if va else None) for label, va, vb in pairs]
        if args.json:
            print(json.dumps({"a": a.to_dict(), "b": b.to_dict(), "ratios_b_over_a": {r[0]: r[3] for r in rows}},
                             indent=2))
            return 0
        print(f"{'':28} {'run ' + str(a.id):>14} {'run ' + str(b.id):>14} {'B / A':>8}")
        for label, va, vb, ratio in rows:
            print(f"{label:28} {va:14.4g} {vb:14.4g} {'-' if ratio is None else f'{ratio:.3f}':>8}")
        return 0
    if args.model is None:
        raise EdgeLMError("give a model folder, or --history, or --compare A B")
    if args.device != "local":
        if not args.device.startswith("adb:") or len(args.device) <= 4:
            raise EdgeLMError(f"device {args.device!r}: use local or adb:SERIAL (edgelm devices lists serials)")
        from .bench.remote import remote_bench
        from .devices.transport import AdbTransport

        serial = args.device[4:]
        if not args.no_store:
            store.check_writable()
        record = remote_bench(AdbTransport(serial), serial, args.model, python=args.remote_python,
                              prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, runs=args.runs,
                              warmup=args.warmup, threads=args.threads, as_profile=args.as_profile,
                              extra_args=[*(["--lookup"] if args.lookup else []),
                                          *(["--sequences", str(args.sequences)] if args.sequences > 1 else [])])
        if not args.no_store:
            record = store.append(record)
        print(json.dumps(record.to_dict(), indent=2) if args.json else format_bench(record))
        if record.energy.warning:
            print(f"warning: {record.energy.warning}", file=sys.stderr)
        return 0
    if not args.no_store:
        store.check_writable()  # before minutes of benchmarking
    from tqdm.auto import tqdm

    bar = tqdm(total=args.runs + args.warmup, desc="bench", unit="run", disable=args.json, file=sys.stderr,
               leave=False)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    record = bench(args.model, prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens, runs=args.runs,
                   warmup=args.warmup, threads=args.threads, as_profile=args.as_profile, progress=progress,
                   lookup=args.lookup, sequences=args.sequences)
    bar.close()
    if not args.no_store:
        record = store.append(record)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(format_bench(record))
        if not args.no_store:
            print(f"  stored as run {record.id} in {store.path}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .bench import ResultsStore
    from .plan.planner import format_plan, plan

    model = args.model or args.preset
    records = ResultsStore(args.store).read() if model else []
    if args.route:
        return _cmd_route(args, model, records)
    if args.tokens_per_day is None:
        raise EdgeLMError("plan needs --tokens-per-day (or --route with a workload)")
    if args.sweep or args.largest:
        from pathlib import Path

        from .plan.figures import largest, plot_devices, plot_sweep, sweep, sweep_presets
        from .profiler.devices import get_profile

        dev = get_profile(args.device)
        results = sweep(dev, args.tokens_per_day, args.context, args.app_dram_share, args.battery_target,
                        args.samples_per_request)
        out: dict[str, Any] = {}
        if args.sweep:
            outdir = Path(args.out)
            files = plot_sweep(results, dev, outdir / f"battery-vs-params-{dev.id}")
            files += plot_devices(model, None if model else (args.params or "350M"), args.quant, args.tokens_per_day,
                                  args.context, args.app_dram_share, outdir / "devices")
            out["figures"] = [str(f) for f in files]
            out["sweep"] = {q.value: [r.to_dict() for r in rs] for q, rs in results.items()}
            named = sweep_presets(dev, args.tokens_per_day, args.context, args.app_dram_share, args.battery_target,
                                  args.samples_per_request)
            out["presets"] = {q.value: [r.to_dict() for r in rs] for q, rs in named.items()}
        if args.largest:
            best = largest(results)
            out["largest"] = best.to_dict() if best else None
        if args.json:
            print(json.dumps(out, indent=2))
            return 0
        if args.sweep:
            print("hours of battery at 10 tokens/s, and whether the model fits the DRAM budget")
            for table, width in ((results, 8), (named, 14)):
                print(f"{'params' if table is results else 'model':>{width}} "
                      + " ".join(f"{q.value + ' h':>10} {'fits':>5}" for q in table))
                for i in range(len(next(iter(table.values())))):
                    row = [table[q][i] for q in table]
                    print(f"{row[0].report.model.name:>{width}} " + " ".join(
                        f"{(r.hours_at_rate(10.0) or 0):10.1f} {'yes' if r.report.fits else 'NO':>5}" for r in row))
            print("figures: " + ", ".join(out["figures"]))
        if args.largest:
            best = out["largest"]
            if best is None:
                print(f"no model size fits {dev.id}'s DRAM budget with at most {args.battery_target:g}% battery a day")
            else:
                print(f"largest that fits: {best['model']} {best['quant']} "
                      f"({best['battery_percent_per_day']:.1f}% battery a day, {best['dram_peak_bytes'] / 1e6:.0f} MB)")
        return 0
    result = plan(args.device, model=model, params=args.params, quant=args.quant, tokens_per_day=args.tokens_per_day,
                  context=args.context, app_dram_share=args.app_dram_share,
                  battery_target_percent=args.battery_target, store_records=records,
                  samples_per_request=args.samples_per_request)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_plan(result))
    return 0


def _cmd_route(args: argparse.Namespace, model: str | None, records: list[Any]) -> int:
    from pathlib import Path

    from .plan.planner import PlanError
    from .plan.route import RequestClass, format_route, get_radio, plot_route, read_workload, route

    if args.sweep or args.largest or args.tokens_per_day is not None:
        raise PlanError("--route takes a workload (--workload FILE or --requests-per-day), not --tokens-per-day, "
                        "--sweep or --largest")
    if (args.workload is None) == (args.requests_per_day is None):
        raise PlanError("--route needs one of --workload FILE or --requests-per-day N")
    if args.workload is not None:
        workload = read_workload(args.workload)
    else:
        workload = [RequestClass("requests", args.tokens_in, args.tokens_out, args.requests_per_day,
                                 args.cloud_share)]
    res = route(args.device, workload, radio=args.radio, cloud=args.cloud, model=model, params=args.params,
                quant=args.quant, context=args.context, app_dram_share=args.app_dram_share,
                battery_target_percent=args.battery_target, latency_target_s=args.latency_target,
                samples_per_request=args.samples_per_request, store_records=records)
    files: list[Path] = []
    if args.plot:
        radios = [res.radio] + [get_radio(r) for r in ("wifi", "lte", "5g-nr") if r != res.radio.id]
        files = plot_route(res, radios, Path(args.plot))
    if args.json:
        print(json.dumps({**res.to_dict(), "figures": [str(f) for f in files]}, indent=2))
    else:
        print(format_route(res))
        if files:
            print("figures: " + ", ".join(str(f) for f in files))
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from .quickstart import quickstart

    quickstart(args.model_dir, args.report_dir, threads=args.threads)
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="DIR", help="a model folder made by edgelm export")
    p.add_argument("--max-new-tokens", type=TOKENS, default=256)
    p.add_argument("--temperature", type=_finite, default=0.0,
                   help="0 = greedy (default); below 1.2e-38 (float32's smallest normal) is greedy too")
    p.add_argument("--top-k", type=_int_in(0, 2**63 - 1), default=0)
    p.add_argument("--top-p", type=_finite, default=1.0)
    p.add_argument("--min-p", type=_finite, default=0.0)
    p.add_argument("--repetition-penalty", type=_finite, default=1.0)
    p.add_argument("--frequency-penalty", type=_finite, default=0.0)
    p.add_argument("--presence-penalty", type=_finite, default=0.0)
    p.add_argument("--repeat-last-n", type=_int_in(-1, 2**62), default=-1, metavar="N",
                   help="the penalties read the last N tokens (-1: all, default; 0: none)")
    p.add_argument("--seed", type=_int_in(0, 2**64 - 1), default=None)
    g = p.add_argument_group("llama.cpp's sampler chain (on with --samplers or any of these filters)")
    g.add_argument("--samplers", metavar="LIST", default=None,
                   help="the chain's steps in order, separated by ';' or ',': penalties, dry, top_n_sigma, top_k, "
                        "typical, top_p, min_p, xtc, temperature (llama.cpp's names typ_p, temp work too)")
    g.add_argument("--min-keep", type=_int_in(0, 2**62), default=0)
    g.add_argument("--typical-p", type=_finite, default=1.0)
    g.add_argument("--top-n-sigma", type=_finite, default=0.0)
    g.add_argument("--xtc-probability", type=_finite, default=0.0)
    g.add_argument("--xtc-threshold", type=_finite, default=0.1)
    g.add_argument("--dry-multiplier", type=_finite, default=0.0)
    g.add_argument("--dry-base", type=_finite, default=1.75)
    g.add_argument("--dry-allowed-length", type=_int_in(0, 2**62), default=2)
    g.add_argument("--dry-penalty-last-n", type=_int_in(-1, 2**62), default=-1, metavar="N",
                   help="DRY reads the last N tokens (-1: all, default; 0: none)")
    g.add_argument("--dry-sequence-breaker", action="append", default=None, metavar="TEXT",
                   help="a string DRY's repeats may not reach across (repeatable; 'none' for none; default: "
                        "llama.cpp's newline, ':', '\"', '*')")
    p.add_argument("--threads", type=THREADS, default=None)
    p.add_argument("--context", type=_int_in(1, 1 << 22), default=None, help="KV cache size in tokens (default 2048)")
    p.add_argument("--lookup", action=argparse.BooleanOptionalAction, default=None,
                   help="prompt-lookup decoding: several drafted tokens verified per pass, the same output "
                        "(greedy: the same tokens; sampling: the same distribution; default: on for "
                        "greedy decoding on edgelm's operators)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgelm", description="Small language models on phones and edge boards.")
    parser.add_argument("--version", action="version", version=f"edgelm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("export", help="export a model (HF folder, GGUF file, hub id or preset) to a quantized ONNX folder",
                       description="Export SOURCE to a verified, quantized ONNX model folder. SOURCE is a Hugging Face "
                       "model folder (safetensors), a GGUF file, a hub id, or a preset: smollm2-135m (the real "
                       "SmolLM2-135M-Instruct), mobilellm-125m, mobilellm-350m, mobilellm-600m, mobilellm-1b, smollm2-360m, llama3.2-1b, qwen3-0.6b, gemma3-270m, gemma3-1b "
                       "(random weights, for speed and planning).")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output model folder")
    p.add_argument("--quant", choices=["fp32", "int8", "int4"], default="int4", help="weight format (default int4)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--no-verify", action="store_true", help="skip the check against the PyTorch model")
    p.add_argument("--verify-prompts", type=_int_in(1, 100_000), default=20, metavar="N",
                   help="prompts for verification (default 20)")
    p.add_argument("--kernel", choices=list(BUILDER_KERNELS), default=BUILDER_KERNELS[0],
                   help="what computes the quantized linears: edgelm's BlockQuantMatMul (block offsets inside, "
                   "16-bit activations; default) or ONNX Runtime's MatMulNBits")
    p.add_argument("--via", choices=["auto", "edgelm", "optimum"], default="auto",
                   help="whose graph: edgelm's (in-place KV cache, its own operators), optimum's ONNX exporter "
                   "quantized by ONNX Runtime (standard operators; any decoder optimum exports), or auto "
                   "(default: edgelm's where it builds the model, optimum's otherwise, with a note)")
    p.add_argument("--accuracy-level", type=int, choices=[0, 1, 4], default=4,
                   help="with --kernel matmulnbits: 4 = int8 activations (fast, default), 0/1 = float32")
    p.add_argument("--min-agreement", type=_finite, default=None, metavar="F",
                   help="top-1 agreement the quantized model must reach (default 0.97 int8, 0.95 int4)")
    p.add_argument("--threads", type=THREADS, default=None, help="ONNX Runtime threads for verification")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("generate", help="generate text from a model folder (streams to stdout)")
    _add_run_options(p)
    p.add_argument("-p", "--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("-n", "--samples", type=_int_in(1, 64), default=1, metavar="N",
                   help="N samples of the reply (needs --temperature > 0), decoded in parallel: one pass over "
                        "the weights a step for all N; sample i is the lone reply with seed + i")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json-schema", metavar="FILE", help="constrain the reply to JSON valid against this schema")
    shape.add_argument("--grammar", metavar="FILE", help="constrain the reply to a Lark grammar (a .gbnf file or one "
                       "with ::= rules: GBNF, as llama.cpp's)")
    shape.add_argument("--regex", metavar="RE", help="constrain the reply to match this regular expression")
    shape.add_argument("--tools", metavar="FILE", help="a JSON list of OpenAI-style function specs: reply with one "
                       "call of one of them, printed as JSON {name, arguments}")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("verify", help="check a model folder against its manifest: files, sizes, sha256, graph")
    p.add_argument("model", metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("chat", help="an interactive chat with a model folder")
    _add_run_options(p)
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("profile", help="estimate DRAM, speed, J/token and battery for a model on a device")
    p.add_argument("model", metavar="DIR|PRESET", nargs="?",
                   help="a model folder, or a preset (smollm2-135m, mobilellm-350m, ...)")
    p.add_argument("--device", required=True, help="a profile id (edgelm devices --profiles) or a .toml path")
    p.add_argument("--context", type=_int_in(1, 1 << 22), default=2048, help="KV cache size in tokens (default 2048)")
    p.add_argument("--quant", choices=["fp32", "int8", "int4"], default=None, help="for presets (default int4)")
    p.add_argument("--app-dram-share", type=_finite, default=0.10, help="share of DRAM the app may use (default 0.1)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit the device's power and bandwidth to measured bench runs; print errors before and after")
    p.add_argument("--store", default=None, help="results store for --calibrate")
    p.add_argument("--compare-shapes", action="store_true",
                   help="also compare deep-and-thin with wide-and-shallow shapes of the same size")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("bench", help="benchmark a model folder: TTFT, tokens/s, peak memory, energy")
    p.add_argument("model", metavar="DIR", nargs="?")
    p.add_argument("--device", default="local", help="local (default) or adb:SERIAL")
    p.add_argument("--prompt-tokens", type=_int_in(1, 1 << 20), default=128)
    p.add_argument("--new-tokens", type=_int_in(2, 1 << 20), default=64)
    p.add_argument("--runs", type=_int_in(1, 100_000), default=5)
    p.add_argument("--warmup", type=_int_in(0, 100_000), default=1)
    p.add_argument("--threads", type=THREADS, default=None)
    p.add_argument("--lookup", action="store_true",
                   help="decode with prompt-lookup (greedy): also reports tokens per pass over the weights")
    p.add_argument("--sequences", type=_int_in(1, 64), default=1, metavar="N",
                   help="decode N samples in lockstep (temperature 0.8), one pass over the weights per step: "
                        "reports their aggregate tokens/s and J per sequence")
    p.add_argument("--remote-python", default="python3", help="python on the phone (Termux: python3)")
    p.add_argument("--as-profile", default=None, metavar="ID",
                   help="the device profile this machine is, so plan can use the measurement")
    p.add_argument("--store", default=None, help="results store (default ~/.cache/edgelm/results.jsonl)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    p.add_argument("--history", action="store_true", help="list stored runs")
    p.add_argument("--compare", nargs=2, type=_int_in(1, 2**62), metavar=("A", "B"), help="two stored runs side by side")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("plan", help="battery per day, hours and DRAM fit for a usage pattern on a device")
    p.add_argument("--device", required=True)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", metavar="DIR")
    g.add_argument("--preset", metavar="NAME")
    g.add_argument("--params", metavar="N", help="a model size, e.g. 350M or 7B")
    p.add_argument("--quant", choices=["fp32", "int8", "int4"], default=None)
    p.add_argument("--tokens-per-day", type=_finite, default=None, help="generated tokens a day (not with --route)")
    p.add_argument("--context", type=_int_in(1, 1 << 22), default=2048)
    p.add_argument("--app-dram-share", type=_finite, default=0.10)
    r = p.add_argument_group("--route: what runs here, what goes to a cloud model, and what the radio costs")
    r.add_argument("--route", action="store_true",
                   help="all on the device, all to the cloud and the given split: battery, latency, cloud cost")
    r.add_argument("--workload", metavar="FILE", default=None,
                   help="[[request]] tables of name, tokens_in, tokens_out, per_day, cloud_share")
    r.add_argument("--requests-per-day", type=_finite, default=None, help="one request class (without --workload)")
    r.add_argument("--tokens-in", type=_int_in(0, 1 << 22), default=400)
    r.add_argument("--tokens-out", type=_int_in(1, 1 << 22), default=150)
    r.add_argument("--cloud-share", type=_finite, default=0.0, help="share of the requests sent to the cloud")
    r.add_argument("--radio", default="lte", help="a profile of profiles/radios (wifi, lte, 5g-nr) or a .toml")
    r.add_argument("--cloud", default="hosted-large", help="a profile of profiles/cloud or a .toml")
    r.add_argument("--latency-target", type=_finite, default=5.0, metavar="S",
                   help="mean time to the whole reply the app accepts (default 5 s)")
    r.add_argument("--plot", metavar="STEM", default=None,
                   help="write battery and latency against the share sent, one line per radio (STEM.png, .svg)")
    p.add_argument("--battery-target", type=_finite, default=10.0, metavar="PERCENT",
                   help="battery a day the app may use (default 10%%)")
    p.add_argument("--samples-per-request", type=_int_in(1, 64), default=1, metavar="N",
                   help="samples drawn for each reply (best-of-n, self-consistency), decoded in parallel and "
                        "priced so; --tokens-per-day counts the replies")
    p.add_argument("--sweep", action="store_true", help="vary size and quantization; write figures")
    p.add_argument("--largest", action="store_true", help="the largest model that meets DRAM and battery targets")
    p.add_argument("--out", default="plan-figures", help="folder for --sweep figures")
    p.add_argument("--store", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("quickstart", help="export, chat, bench, profile and plan the default model; write a report")
    p.add_argument("--model-dir", default="models/smollm2-135m-int4")
    p.add_argument("--report-dir", default="reports/quickstart")
    p.add_argument("--threads", type=THREADS, default=None)
    p.set_defaults(func=_cmd_quickstart)

    p = sub.add_parser("devices", help="phones attached over adb, or (--profiles) the device profiles")
    p.add_argument("--profiles", action="store_true", help="list the device profiles")
    p.add_argument("--draft-profile", metavar="SERIAL", help="print a profile draft from a phone's facts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except EdgeLMError as e:
        print(f"edgelm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        hint = "pip install 'edgelm[export]'" if args.command == "export" else "reinstall edgelm"
        print(f"edgelm {args.command}: error: missing dependency {e.name!r} ({hint})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgelm {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`edgelm generate ... | head`): stop quietly, as a Unix tool
        # does; point stdout at /dev/null so the interpreter's final flush cannot fail too.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
