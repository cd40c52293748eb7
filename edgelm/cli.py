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
from typing import Any

from . import __version__
from .errors import EdgeLMError

__all__ = ["build_parser", "main"]


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportConfig, export, format_summary

    cfg = ExportConfig(quant=args.quant, verify=not args.no_verify, verify_prompts=args.verify_prompts,
                       force=args.force, accuracy_level=args.accuracy_level, min_agreement=args.min_agreement, progress=not args.quiet and not args.json, threads=args.threads)
    result = export(args.source, args.output, cfg)
    if args.json:
        print(json.dumps({"folder": str(result.folder), "manifest": result.manifest.to_dict()}, indent=2))
    else:
        print(format_summary(result))
    return 0


def _sampling_from(args: argparse.Namespace) -> Any:
    from .sampling import SamplingParams

    return SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repetition_penalty=args.repetition_penalty, seed=args.seed)


def _cmd_generate(args: argparse.Namespace) -> int:
    from .runtime import load

    model = load(args.model, threads=args.threads, context=args.context)
    prompt: Any = args.prompt if args.raw else [{"role": "user", "content": args.prompt}]
    if args.raw or model.chat_template is None:
        prompt = args.prompt
    for piece in model.generate(prompt, max_new_tokens=args.max_new_tokens, sampling=_sampling_from(args),
                                stop=args.stop or (), stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    from .runtime import load

    model = load(args.model, threads=args.threads, context=args.context)
    messages: list[dict[str, str]] = []
    print(f"edgelm chat: {args.model} (context {model.context} tokens; empty line or Ctrl-D to quit)",
          file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = []
        for piece in model.generate(messages, max_new_tokens=args.max_new_tokens, sampling=_sampling_from(args),
                                    stream=True, truncate=True):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from .profiler.report import compare_shapes, format_report, profile_model

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

    profiles = list_profiles()
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2, default=str))
        return 0
    print(f"{'id':20} {'kind':6} {'SoC':28} {'DRAM':>6} {'bandwidth':>10} {'battery':>9}")
    for p in profiles:
        bat = f"{p.battery_wh:.1f} Wh" if p.battery_wh else "-"
        print(f"{p.id:20} {p.kind:6} {p.soc:28} {p.dram_bytes / 1e9:4.0f} GB {p.peak_bandwidth_bps / 1e9:6.1f} GB/s "
              f"{bat:>9}")
    if not args.profiles:
        print("\n(phones over adb: the android bridge is not built yet; these are the device profiles)")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="DIR", help="a model folder made by edgelm export")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--min-p", type=float, default=0.0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--context", type=int, default=None, help="KV cache size in tokens (default 2048)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgelm", description="Small language models on phones and edge boards.")
    parser.add_argument("--version", action="version", version=f"edgelm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("export", help="export a model (HF folder, GGUF file, hub id or preset) to a quantized ONNX folder",
                       description="Export SOURCE to a verified, quantized ONNX model folder. SOURCE is a Hugging Face "
                       "model folder (safetensors), a GGUF file, a hub id, or a preset: smollm2-135m (the real "
                       "SmolLM2-135M-Instruct), mobilellm-125m, mobilellm-350m, mobilellm-600m, mobilellm-1b "
                       "(random weights, for speed and planning).")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output model folder")
    p.add_argument("--quant", choices=["fp32", "int8", "int4"], default="int4", help="weight format (default int4)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--no-verify", action="store_true", help="skip the check against the PyTorch model")
    p.add_argument("--verify-prompts", type=int, default=20, metavar="N", help="prompts for verification (default 20)")
    p.add_argument("--accuracy-level", type=int, choices=[0, 1, 4], default=4,
                   help="MatMulNBits compute precision: 4 = int8 activations (fast, default), 0/1 = float32")
    p.add_argument("--min-agreement", type=float, default=None, metavar="F",
                   help="top-1 agreement the quantized model must reach (default 0.97 int8, 0.95 int4)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for verification")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("generate", help="generate text from a model folder (streams to stdout)")
    _add_run_options(p)
    p.add_argument("-p", "--prompt", required=True)
    p.add_argument("--raw", action="store_true", help="do not apply the chat template")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("chat", help="an interactive chat with a model folder")
    _add_run_options(p)
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("profile", help="estimate DRAM, speed, J/token and battery for a model on a device")
    p.add_argument("model", metavar="DIR|PRESET", help="a model folder, or a preset (smollm2-135m, mobilellm-350m, ...)")
    p.add_argument("--device", required=True, help="a profile id (edgelm devices --profiles) or a .toml path")
    p.add_argument("--context", type=int, default=2048, help="KV cache size in tokens (default 2048)")
    p.add_argument("--quant", choices=["fp32", "int8", "int4"], default=None, help="for presets (default int4)")
    p.add_argument("--app-dram-share", type=float, default=0.10, help="share of DRAM the app may use (default 0.1)")
    p.add_argument("--compare-shapes", action="store_true",
                   help="also compare deep-and-thin with wide-and-shallow shapes of the same size")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_profile)

    p = sub.add_parser("devices", help="list device profiles")
    p.add_argument("--profiles", action="store_true", help="list the device profiles")
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
        print(f"edgelm {args.command}: error: missing dependency {e.name!r} "
              "(export needs: pip install 'edgelm[export]')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgelm {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
