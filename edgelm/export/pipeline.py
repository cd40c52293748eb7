"""The export pipeline: load -> quantize -> build graph -> save -> verify -> manifest.

:func:`export` is what ``edgelm export`` calls. Everything is written into a temporary
folder beside the output and renamed into place only when complete and verified, so an
interrupted or failed export leaves nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._fields import Fields
from .._io import NO_SPACE_ERRNOS, atomic_dir, check_output_folder, sha256_file, write_json
from .._version import __version__
from ..arch import Architecture, Family
from ..errors import ExportError, VerificationError
from ..manifest import (
    SCHEMA_VERSION,
    FileEntry,
    GenerationSpec,
    IOSpec,
    Manifest,
    Quant,
    QuantizationInfo,
    SourceInfo,
    Verification,
    write_manifest,
)
from .graph import KERNELS, build_model, graph_io
from .quantize import QuantizedWeight, quantize_asym, quantize_sym
from .sources import LoadedSource, load_source

__all__ = ["ExportConfig", "ExportResult", "export", "prepare_weights", "format_summary"]

MODEL_FILE = "model.onnx"
BLOCK_SIZE = 32
VIAS = ("auto", "edgelm", "optimum")


@dataclass(frozen=True)
class ExportConfig:
    quant: Quant = Quant.INT4
    verify: bool = True
    verify_prompts: int = 20
    verify_tokens: int = 64
    accuracy_level: int = 4
    #: "edgelm" (BlockQuantMatMul: Q4_1 offsets inside, 16-bit activations) or
    #: "matmulnbits" (ONNX Runtime's MatMulNBits at ``accuracy_level``).
    kernel: str = "edgelm"
    force: bool = False
    progress: bool = True
    threads: int | None = None
    #: Overrides the default top-1 agreement threshold (0.97 int8, 0.95 int4).
    min_agreement: float | None = None
    #: "auto" (edgelm's graph where its builder builds the model, optimum's otherwise, with
    #: a note), "edgelm" (its graph or a refusal) or "optimum" (optimum's ONNX exporter and
    #: ONNX Runtime's quantizers).
    via: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "quant", Quant(self.quant))
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ExportError(f"min_agreement must be in [0, 1], got {self.min_agreement}")
        if self.accuracy_level not in (0, 1, 4):
            raise ExportError(f"accuracy_level must be 0, 1 or 4, got {self.accuracy_level}")
        if self.kernel not in KERNELS:
            raise ExportError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.via not in VIAS:
            raise ExportError(f"via must be one of {', '.join(VIAS)}, got {self.via!r}")
        if self.via == "optimum" and self.kernel != KERNELS[0]:
            raise ExportError("--kernel chooses the linears of edgelm's graph; optimum's takes ONNX Runtime's "
                              "quantizer (int4: MatMulNBits)")
        if self.verify_prompts < 1 or self.verify_tokens < 16:
            raise ExportError("verification needs at least 1 prompt of at least 16 tokens")


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    manifest: Manifest
    stage_seconds: dict[str, float]


class _Stages:
    def __init__(self, enabled: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.enabled = enabled

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.enabled:
            print(f"[edgelm] {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t, 2)

    def say(self, msg: str) -> None:
        if self.enabled:
            print(f"[edgelm]   {msg}", file=sys.stderr, flush=True)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", disable=not enabled, leave=False, file=sys.stderr)


def _carried_how(method: str) -> str:
    """What carrying a GGUF tensor's blocks kept: all of it for the legacy types; the codes,
    with the block scales rounded to float16, for the K-quants (kquants.py)."""
    return "codes carried, block scales rounded to float16" if method.endswith("_K") else "exact"


def prepare_weights(src: LoadedSource, quant: Quant, progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Canonical float/GGUF weights -> the graph's weights (packed, quantized) and the
    method used for each kind."""
    arch = src.arch
    fw = src.float_weights()
    carried = src.gguf_weights
    methods: dict[str, set[str]] = {}

    def note(kind: str, how: str) -> None:
        methods.setdefault(kind, set()).add(how)

    def linear(name: str, kind: str) -> np.ndarray | QuantizedWeight:
        if quant is Quant.FP32:
            note(kind, "float32")
            return fw[name]
        bits = 4 if quant is Quant.INT4 else 8
        c = carried.get(name)
        if c is not None and c.bits == bits:
            note(kind, f"{c.method} ({_carried_how(c.method)})")
            return c
        w = quantize_asym(fw[name], 4, BLOCK_SIZE) if bits == 4 else quantize_sym(fw[name], 8, BLOCK_SIZE)
        note(kind, w.method)
        return w

    def table(name: str, kind: str) -> np.ndarray | QuantizedWeight:
        # The embedding / LM head stays 8-bit in int4 mode: at 49k x 576 it is a fifth of a
        # small model, and 4-bit rounding of the head costs more agreement than any layer.
        if quant is Quant.FP32:
            note(kind, "float32")
            return fw[name]
        c = carried.get(name)
        if c is not None and c.bits == 8 and c.offsets is None:
            note(kind, f"{c.method} (exact)")
            return c
        w = quantize_sym(fw[name], 8, BLOCK_SIZE)
        note(kind, "sym")
        return w

    out: dict[str, Any] = {"final_norm": fw["final_norm"], "embed": table("embed", "embedding")}
    if not arch.tie_word_embeddings:
        out["head"] = table("head", "head")
    bar = _bar(arch.num_layers, "quantize", progress and quant is not Quant.FP32)
    for i in range(arch.num_layers):
        p = f"L{i}."
        out[p + "attn_norm"] = fw[p + "attn_norm"]
        out[p + "mlp_norm"] = fw[p + "mlp_norm"]
        if arch.qk_norm:
            out[p + "q_norm"], out[p + "k_norm"] = fw[p + "q_norm"], fw[p + "k_norm"]
        if arch.post_norms:
            out[p + "post_attn_norm"], out[p + "post_mlp_norm"] = fw[p + "post_attn_norm"], fw[p + "post_mlp_norm"]
        qkv = [linear(p + n, "attention") for n in ("q", "k", "v")]
        gu = [linear(p + n, "mlp") for n in ("gate", "up")]
        if quant is Quant.FP32:
            out[p + "qkv"] = np.concatenate(qkv)  # type: ignore[arg-type]
            out[p + "gate_up"] = np.concatenate(gu)  # type: ignore[arg-type]
        else:
            out[p + "qkv"] = QuantizedWeight.concat_rows(qkv)  # type: ignore[arg-type]
            out[p + "gate_up"] = QuantizedWeight.concat_rows(gu)  # type: ignore[arg-type]
        out[p + "o"] = linear(p + "o", "attention")
        out[p + "down"] = linear(p + "down", "mlp")
        if arch.attention_bias:
            out[p + "qkv_bias"] = np.concatenate([fw[p + n] for n in ("q_bias", "k_bias", "v_bias")])
        bar.update(1)
    bar.close()
    return out, {k: ", ".join(sorted(v)) for k, v in methods.items()}


def _weight_bytes(model: Any, arch: Architecture) -> dict[str, int]:
    """Bytes of the initializers by kind."""
    from onnx import numpy_helper

    kinds = {"embeddings": 0, "attention": 0, "mlp": 0, "head": 0, "scales": 0, "offsets": 0,
             "norms": 0, "biases": 0, "rotary_tables": 0, "other": 0}
    for init in model.graph.initializer:
        n = init.name
        nbytes = numpy_helper.to_array(init).nbytes if not init.raw_data else len(init.raw_data)
        if n.endswith(".scales"):
            kinds["scales"] += nbytes
        elif n.endswith((".block_offsets", ".block_mins")):
            kinds["offsets"] += nbytes
        elif n.endswith(".bias"):
            kinds["biases"] += nbytes
        elif n.startswith("rotary."):
            kinds["rotary_tables"] += nbytes
        elif "norm" in n:
            kinds["norms"] += nbytes
        elif n.startswith("embed.") or (n.startswith("lm_head.") and arch.tie_word_embeddings):
            kinds["embeddings"] += nbytes
        elif n.startswith("lm_head."):
            kinds["head"] += nbytes
        elif ".qkv." in n or ".o." in n:
            kinds["attention"] += nbytes
        elif ".gate_up." in n or ".down." in n:
            kinds["mlp"] += nbytes
        else:
            kinds["other"] += nbytes
    kinds["total"] = sum(kinds.values())
    return kinds


def _float_tensors(quant: Quant, arch: Architecture, kernel: str) -> list[str]:
    if quant is Quant.FP32:
        return ["all"]
    half = kernel == "edgelm"
    out = ["rms norm weights", "rotary cos/sin tables", f"block scales ({'float16' if half else 'float32'})"]
    if quant is Quant.INT4:
        out.append("block mins (float16, GGUF Q4_1's m)" if half else "block offsets (float32, Q4_1-style)")
    if arch.attention_bias:
        out.append("attention biases")
    return out


def _tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"edgelm": __version__, "python": sys.version.split()[0]}
    for pkg in ("onnx", "onnxruntime", "numpy", "torch", "transformers", "gguf", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _save_onnx(model: Any, folder: Path) -> None:
    import onnx

    onnx.save_model(model, str(folder / MODEL_FILE), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=MODEL_FILE + ".data", size_threshold=1024)


def export(source: str, output: Path | str, config: ExportConfig | None = None) -> ExportResult:
    """Export SOURCE to a verified model folder at ``output`` (see :class:`ExportConfig`)."""
    cfg = config or ExportConfig()
    output = Path(output)
    check_output_folder(output, cfg.force)  # before the slow work; checked again at the rename
    st = _Stages(cfg.progress)
    t0 = time.perf_counter()
    with st.stage("load source"):
        src = load_source(source, progress=st.say, other_ok=cfg.via != "edgelm")
    try:
        if cfg.via == "optimum" or src.arch.family is Family.OTHER:
            return _export_via_optimum(src, output, cfg, st, t0)
        return _export_loaded(src, output, cfg, st, t0)
    finally:
        src.close()


def _export_via_optimum(src: LoadedSource, output: Path, cfg: ExportConfig, st: _Stages, t0: float) -> ExportResult:
    from . import via_optimum as vo

    refused = src.info.get("builder_refused")
    if cfg.via != "optimum":  # the automatic switch: say so whatever the progress setting
        print(f"[edgelm] note: {refused}. Exporting through optimum's ONNX exporter instead (standard ONNX "
              "Runtime operators, a KV cache copied each step): slower than edgelm's graph", file=sys.stderr)
    missing = vo.optimum_available()
    if missing:
        raise ExportError(f"exporting through optimum needs optimum-onnx and onnx-ir ({missing}): {vo.INSTALL}"
                          + (f"; without them: {refused}" if refused else ""))
    with vo.work_dir() as work_name:
        work = Path(work_name)
        with st.stage("export with optimum"):
            model = vo.export_onnx(src.model, work)
        with st.stage(f"quantize ({cfg.quant.value}, ONNX Runtime)"):
            model = vo.quantize(model, cfg.quant, work, cfg.accuracy_level, src.arch.vocab_size)
        io = vo.optimum_io(model, src.arch.num_layers)
        weight_bytes = vo.weight_bytes(model)
        methods = dict(vo.METHODS[cfg.quant])
        src.info["via"] = "optimum"
        if refused:
            src.info["builder_refused"] = refused
        return _write_folder(src, output, cfg, st, t0, model, io, weight_bytes, methods,
                             float_tensors=["all"] if cfg.quant is Quant.FP32 else
                             ["embedding table", "norm weights", "block scales (float32)"],
                             parameter_count=sum(int(p.numel()) for p in src.model.parameters()))


def _export_loaded(src: LoadedSource, output: Path, cfg: ExportConfig, st: _Stages, t0: float) -> ExportResult:
    arch = src.arch
    with st.stage(f"quantize ({cfg.quant.value})"):
        weights, methods = prepare_weights(src, cfg.quant, progress=cfg.progress)
    with st.stage("build graph"):
        cos, sin = src.rope_cos_sin(arch.max_context)
        local = src.rope_cos_sin(arch.max_context, local=True) if arch.sliding_window else None
        model = build_model(arch, weights, cos, sin, accuracy_level=cfg.accuracy_level, kernel=cfg.kernel,
                            local_rope=local)
        del weights
        weight_bytes = _weight_bytes(model, arch)
        io = graph_io(arch, model, MODEL_FILE)
    return _write_folder(src, output, cfg, st, t0, model, io, weight_bytes, methods,
                         float_tensors=_float_tensors(cfg.quant, arch, cfg.kernel),
                         parameter_count=arch.parameter_count())


def _write_folder(src: LoadedSource, output: Path, cfg: ExportConfig, st: _Stages, t0: float, model: Any, io: IOSpec,
                  weight_bytes: dict[str, int], methods: dict[str, str], *, float_tensors: list[str],
                  parameter_count: int) -> ExportResult:
    """Save the graph with the tokenizer and generation config in a temporary folder, verify
    it, write the manifest, rename it into place."""
    try:
        with atomic_dir(output, force=cfg.force) as tmp:
            with st.stage("save"):
                _save_onnx(model, tmp)
                del model
                for f in src.tokenizer_dir.iterdir():
                    if f.is_file():
                        shutil.copy2(f, tmp / f.name)
                generation = _generation(src)
                write_json(tmp / "generation_config.json", generation)
            verification = None
            if cfg.verify:
                with st.stage("verify against PyTorch"):
                    verification = _verify(src, tmp, io, cfg)
                st.say(_verification_line(verification))
                if not verification.passed:
                    raise VerificationError(f"verification failed: {_verification_line(verification)}; "
                                            "nothing was written (use --no-verify to keep it anyway)")
            manifest = _manifest(src, cfg, tmp, io, weight_bytes, methods, generation, verification, t0,
                                 float_tensors=float_tensors, parameter_count=parameter_count)
            write_manifest(tmp, manifest)
    except OSError as e:
        if e.errno in NO_SPACE_ERRNOS:
            raise ExportError(f"no space left on the device while writing {output}") from e
        raise ExportError(f"cannot write {output}: {e.strerror or e}") from e
    return ExportResult(output.absolute(), manifest, st.seconds)


def _generation(src: LoadedSource) -> dict[str, Any]:
    eos = [int(e) for e in src.special_ids.get("eos_token_ids", []) if e is not None]
    bos = src.special_ids.get("bos_token_id")
    return {"bos_token_id": None if bos is None else int(bos), "eos_token_id": eos,
            "max_new_tokens": 256, "do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


def _verify(src: LoadedSource, folder: Path, io: IOSpec, cfg: ExportConfig) -> Verification:
    from .verify import verify_model

    bar = _bar(cfg.verify_prompts, "verify", cfg.progress)
    enforced = not src.info.get("random_init", False)
    try:
        return verify_model(folder / MODEL_FILE, src.arch, io, src.model, folder / "tokenizer.json",
                            cfg.quant, prompts=cfg.verify_prompts, tokens=cfg.verify_tokens, enforced=enforced,
                            min_agreement=cfg.min_agreement,
                            threads=cfg.threads, progress=bar.update)
    finally:
        bar.close()


def _verification_line(v: Verification) -> str:
    verdict = "PASS" if v.passed else "FAIL"
    if not v.enforced:
        verdict = "reported (random weights: not enforced)"
    return (f"{verdict}: {v.tokens} tokens over {v.prompts} prompts, max |logit diff| {v.max_abs_logit_diff:.2e}, "
            f"top-1 agreement {v.top1_agreement:.4f}, mean KL {v.mean_kl:.2e} ({v.criterion})")


def _manifest(src: LoadedSource, cfg: ExportConfig, folder: Path, io: IOSpec, weight_bytes: dict[str, int],
              methods: dict[str, str], generation: dict[str, Any], verification: Verification | None,
              t0: float, *, float_tensors: list[str], parameter_count: int) -> Manifest:
    arch = src.arch
    files = [FileEntry(f.name, f.stat().st_size, sha256_file(f)) for f in sorted(folder.iterdir())
             if f.is_file()]
    quantized = cfg.quant is not Quant.FP32
    optimum = io.kv_shared_buffer is False
    kernel = ({Quant.INT4: "matmulnbits", Quant.INT8: "matmulinteger"}.get(cfg.quant) if optimum else cfg.kernel)
    qinfo = QuantizationInfo(
        mode=cfg.quant, linear_bits={Quant.FP32: None, Quant.INT8: 8, Quant.INT4: 4}[cfg.quant],
        embedding_bits=8 if quantized and not optimum else None,
        head_bits=8 if quantized else None,
        block_size=BLOCK_SIZE if quantized and not (optimum and cfg.quant is Quant.INT8) else None,
        accuracy_level=cfg.accuracy_level if quantized and kernel == "matmulnbits" else None,
        methods=methods, float_tensors=float_tensors, linear_kernel=kernel if quantized else None)
    source = SourceInfo(src.kind, src.name, dict(src.info))
    return Manifest(
        schema_version=SCHEMA_VERSION, edgelm_version=__version__,
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        source=source, architecture=arch, parameter_count=parameter_count, quantization=qinfo,
        weights_bytes=weight_bytes, files=files, io=io,
        generation=GenerationSpec.parse(Fields(generation, "generation", ExportError), arch.vocab_size),
        tools=_tool_versions(),
        verification=verification, export_seconds=round(time.perf_counter() - t0, 2))


def _mb(n: int) -> str:
    return f"{n / 1e6:8.2f} MB"


def _quant_detail(m: Manifest) -> str:
    q = m.quantization
    if not q.linear_bits:
        return ""
    bits = lambda b: "float32" if b is None else f"{b}-bit"  # noqa: E731
    table = (f"embedding/head {bits(q.embedding_bits)}" if q.embedding_bits == q.head_bits
             else f"embedding {bits(q.embedding_bits)}, head {bits(q.head_bits)}")
    block = f", block {q.block_size}" if q.block_size else ""
    via = ", ONNX Runtime's quantizer on optimum's graph" if not m.io.kv_shared_buffer else ""
    return f" (linears {q.linear_bits}-bit, {table}{block}{via})"


def format_summary(result: ExportResult) -> str:
    m = result.manifest
    a = m.architecture
    lines = [f"exported {m.source.name} -> {result.folder}",
             f"  architecture  {a.model_type or a.family.value}: {a.num_layers} layers x {a.hidden_size}, {a.num_heads} heads "
             f"({a.num_kv_heads} KV), vocab {a.vocab_size}, {m.parameter_count / 1e6:.1f}M parameters",
             f"  quantization  {m.quantization.mode.value}" + _quant_detail(m),
             "  weights by kind:"]
    for k, v in m.weights_bytes.items():
        if v and k != "total":
            lines.append(f"    {k:<14}{_mb(v)}")
    lines.append(f"    {'total':<14}{_mb(m.weights_bytes['total'])}")
    lines.append(f"  folder        {_mb(m.total_file_bytes()).strip()} in {len(m.files)} files")
    for k, how in m.quantization.methods.items():
        lines.append(f"  {k:<13} {how}")
    if m.verification is not None:
        lines.append(f"  verification  {_verification_line(m.verification)}")
    else:
        lines.append("  verification  skipped (--no-verify)")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    lines.append(f"  time          {m.export_seconds:.1f}s ({stages})")
    return "\n".join(lines)


