"""``edgelm.json``: the contract between export and everything downstream.

Export knows the architecture, the quantization, the bytes of every kind of weight
and how the model was verified; it writes them here once. The runtime, the profiler,
bench and plan read them back with :func:`read_manifest` and never re-derive them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from ._fields import MISSING, Fields
from ._io import write_json
from .arch import Architecture, KVDtype
from .errors import ManifestError

__all__ = ["MANIFEST_NAME", "LINEAR_KERNELS", "BUILDER_KERNELS", "OPERATOR_DOMAINS", "SCHEMA_VERSION", "kv_dtype_for", "Quant", "KVDtype", "QuantizationInfo",
           "Verification", "FileEntry", "IOSpec", "GenerationSpec", "SourceInfo", "Manifest", "read_manifest",
           "write_manifest", "confined_file", "verify_files"]

MANIFEST_NAME = "edgelm.json"
#: What may compute the quantized linears (QuantizationInfo.linear_kernel); the first is export's default.
LINEAR_KERNELS = ("edgelm", "matmulnbits", "matmulinteger")
#: Those edgelm's graph builder writes (``export --kernel``); matmulinteger is ONNX Runtime's
#: int8 quantizer's, in a folder exported through optimum.
BUILDER_KERNELS = LINEAR_KERNELS[:2]
#: 2: BlockQuantMatMul takes float16 scales and block mins; 3: io.operator_domains and
#: io.logits_rows (logits for the last N positions, to verify drafted tokens in one pass).
SCHEMA_VERSION = 3
#: Operator domains a graph may use beyond the ONNX standard: ONNX Runtime's contrib
#: operators, and edgelm's operator library (edgelm.runtime.ortops.DOMAIN).
OPERATOR_DOMAINS = ("com.microsoft", "ai.edgelm")


class Quant(str, Enum):
    FP32 = "fp32"
    INT8 = "int8"
    INT4 = "int4"


def kv_dtype_for(quant: Quant | str, linear_kernel: str | None = None) -> KVDtype:
    """The KV cache's element type an export with this quantization and linear kernel
    (None: the default, LINEAR_KERNELS[0]) writes as ``io.kv_dtype``: float16 where
    edgelm's Attention operator reads it (quantized linears on edgelm's kernel), float32
    under ONNX Runtime's GroupQueryAttention (fp32 and ``--kernel matmulnbits`` folders)."""
    if Quant(quant) is Quant.FP32:
        return KVDtype.FLOAT32
    return KVDtype.FLOAT16 if (linear_kernel or LINEAR_KERNELS[0]) == "edgelm" else KVDtype.FLOAT32


MAX_MANIFEST_BYTES = 16 << 20


def _bare_name(f: Fields, key: str) -> str:
    """A file name inside the model folder: no folder part, no ``..``, not absolute."""
    name = f.text(key, max_len=255)
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise f.fail(key, "must be a file name inside the model folder", name)
    return name


@dataclass(frozen=True)
class QuantizationInfo:
    """How the weights are stored. ``methods`` maps each weight kind to how it was made
    (e.g. ``gguf:Q4_1`` carried over exactly, ``asym-mse``, ``sym``, ``float32``)."""

    mode: Quant
    linear_bits: int | None
    embedding_bits: int | None
    head_bits: int | None
    block_size: int | None
    accuracy_level: int | None
    methods: dict[str, str] = field(default_factory=dict)
    float_tensors: list[str] = field(default_factory=list)
    #: What computes the quantized linears: "edgelm" (BlockQuantMatMul, edgelm's compiled
    #: operator library) or "matmulnbits" (ONNX Runtime's own); None for fp32.
    linear_kernel: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Quant(self.mode))

    @classmethod
    def parse(cls, f: Fields) -> QuantizationInfo:
        def opt_int(key: str, choices: tuple[int, ...]) -> int | None:
            if f.data.get(key) is None:
                return None
            v = f.integer(key)
            if v not in choices:
                raise f.fail(key, f"must be one of {', '.join(map(str, choices))}", v)
            return int(v)

        kernel = f.data.get("linear_kernel")
        return cls(Quant(f.text("mode", choices=tuple(q.value for q in Quant))), opt_int("linear_bits", (4, 8)),
                   opt_int("embedding_bits", (4, 8)), opt_int("head_bits", (4, 8)), opt_int("block_size", (32,)),
                   opt_int("accuracy_level", (0, 1, 2, 3, 4)), f.str_map("methods", default={}),
                   [str(x) for x in f.list("float_tensors", default=[]) if isinstance(x, str)],
                   None if kernel is None else f.text("linear_kernel", choices=LINEAR_KERNELS))


@dataclass(frozen=True)
class Verification:
    passed: bool
    reference: str
    prompts: int
    tokens: int
    max_abs_logit_diff: float
    top1_agreement: float
    mean_kl: float
    criterion: str
    enforced: bool = True
    seconds: float = 0.0

    @classmethod
    def parse(cls, f: Fields) -> Verification:
        return cls(f.flag("passed"), f.text("reference"), f.integer("prompts", lo=0), f.integer("tokens", lo=0),
                   f.number("max_abs_logit_diff", lo=0), f.number("top1_agreement", lo=0, hi=1),
                   f.number("mean_kl", lo=0), f.text("criterion"), f.flag("enforced", default=True),
                   f.number("seconds", lo=0, default=0.0))


@dataclass(frozen=True)
class FileEntry:
    name: str
    bytes: int
    sha256: str

    @classmethod
    def parse(cls, f: Fields) -> FileEntry:
        digest = f.text("sha256", max_len=64).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise f.fail("sha256", "must be 64 hexadecimal digits", digest)
        return cls(_bare_name(f, "name"), f.integer("bytes", lo=0), digest)


@dataclass(frozen=True)
class IOSpec:
    """The model graph's interface: its file (inside the folder), the names of its inputs
    and outputs, the KV cache's layout and element type, and the operator domains beyond
    the ONNX standard its nodes use (the runtime registers edgelm's library for them).

    Two kinds of graph: edgelm's (``kv_shared_buffer``: a cache of fixed capacity bound as
    past and present, positions from ``seqlens_k``, logits for the last ``logits_rows``
    positions) and optimum's (past and present separate, the present the past with the new
    rows appended, an ``attention_mask`` and optional ``position_ids``, logits for every
    position)."""

    model_file: str = "model.onnx"
    kv_dtype: KVDtype = KVDtype.FLOAT32
    input_ids: str = "input_ids"
    seqlens_k: str = "seqlens_k"
    total_sequence_length: str = "total_sequence_length"
    logits_rows: str = "logits_rows"
    attention_mask: str = ""
    position_ids: str = ""
    past_key: tuple[str, ...] = ()
    past_value: tuple[str, ...] = ()
    present_key: tuple[str, ...] = ()
    present_value: tuple[str, ...] = ()
    kv_layout: str = "BNSH"
    kv_shared_buffer: bool = True
    operator_domains: tuple[str, ...] = ()
    #: Descriptions export writes for people (``logits``, ``position_handling``); never read.
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kv_dtype", KVDtype(self.kv_dtype))

    @classmethod
    def parse(cls, f: Fields) -> IOSpec:
        def names(key: str) -> tuple[str, ...]:
            items = f.list(key)
            if not all(isinstance(x, str) and 0 < len(x) < 256 for x in items):
                raise f.fail(key, "must be a list of tensor names")
            return tuple(items)

        kinds = ("past_key", "past_value", "present_key", "present_value")
        notes = {k: f.text(k) for k in f.data if k not in {fl.name for fl in fields(cls)}
                 and isinstance(f.data[k], str)}
        past_key, past_value, present_key, present_value = (names(k) for k in kinds)
        domains = f.list("operator_domains", max_len=len(OPERATOR_DOMAINS))
        if not all(isinstance(x, str) and x in OPERATOR_DOMAINS for x in domains) or len(set(domains)) < len(domains):
            raise f.fail("operator_domains", f"must list domains among {', '.join(OPERATOR_DOMAINS)}", domains)
        shared = f.flag("kv_shared_buffer", default=True)
        # edgelm's graph needs the position inputs; optimum's the attention mask.
        needed = ("seqlens_k", "total_sequence_length", "logits_rows") if shared else ("attention_mask",)

        def name(key: str) -> str:
            value = f.text(key, max_len=255, default=MISSING if key in needed else "")
            if key in needed and not value:
                raise f.fail(key, "must name a graph input", value)
            return value

        if len({len(past_key), len(past_value), len(present_key), len(present_value)}) != 1:
            raise f.fail("past_key", "must name as many tensors as past_value, present_key and present_value")
        return cls(model_file=_bare_name(f, "model_file") if f.has("model_file") else "model.onnx",
                   kv_dtype=KVDtype(f.text("kv_dtype", default="float32", choices=tuple(k.value for k in KVDtype))),
                   input_ids=f.text("input_ids", max_len=255), seqlens_k=name("seqlens_k"),
                   total_sequence_length=name("total_sequence_length"), logits_rows=name("logits_rows"),
                   attention_mask=name("attention_mask"), position_ids=name("position_ids"), past_key=past_key,
                   past_value=past_value, present_key=present_key, present_value=present_value,
                   kv_layout=f.text("kv_layout", default="BNSH", choices=("BNSH",)),
                   kv_shared_buffer=shared, operator_domains=tuple(domains), notes=notes)

    def to_dict(self) -> dict[str, Any]:
        d = {fl.name: getattr(self, fl.name) for fl in fields(self) if fl.name != "notes"}
        d.update({k: list(v) for k, v in d.items() if isinstance(v, tuple)})
        d["kv_dtype"] = self.kv_dtype.value
        return {**d, **self.notes}


@dataclass(frozen=True)
class GenerationSpec:
    """The model's generation defaults and special tokens (from its generation config)."""

    bos_token_id: int | None = None
    eos_token_id: tuple[int, ...] = ()
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @classmethod
    def parse(cls, f: Fields, vocab_size: int) -> GenerationSpec:
        eos = f.data.get("eos_token_id", [])
        eos_list = [eos] if isinstance(eos, int) and not isinstance(eos, bool) else eos
        if not isinstance(eos_list, list) or len(eos_list) > 1024 or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab_size for t in eos_list):
            raise f.fail("eos_token_id", f"must be a token id or a list of token ids in [0, {vocab_size})", eos)
        bos = f.data.get("bos_token_id")
        return cls(None if bos is None else f.integer("bos_token_id", lo=0, hi=vocab_size - 1), tuple(eos_list),
                   f.integer("max_new_tokens", lo=0, hi=1 << 22, default=256), f.flag("do_sample", default=False),
                   f.number("temperature", lo=0, default=1.0), f.number("top_p", lo=0, hi=1, default=1.0),
                   f.integer("top_k", lo=0, default=0))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eos_token_id": list(self.eos_token_id)}


@dataclass(frozen=True)
class SourceInfo:
    """Where the weights came from: ``kind`` (hf-folder, gguf, preset, ...), ``name``, and
    what the source reported (``info``: scalars, or one level of name -> scalar, e.g.
    ``random_init``, GGUF ``tensor_types``); shown to people, never computed with."""

    kind: str
    name: str | None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, f: Fields) -> SourceInfo:
        def scalar(v: Any) -> bool:
            return v is None or (isinstance(v, (str, int, float, bool)) and len(str(v)) <= 4096)

        info: dict[str, Any] = {}
        for k, v in f.data.items():
            if k in ("kind", "name"):
                continue
            if not (scalar(v) or (isinstance(v, dict) and len(v) <= 1024 and all(scalar(x) for x in v.values()))):
                raise f.fail(k, "must be a string, number, boolean or a flat object of them", v)
            info[k] = v
        name = f.data.get("name")
        return cls(f.text("kind"), None if name is None else f.text("name"), info)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, **self.info}


def _check_schema(version: int) -> int:
    if version != SCHEMA_VERSION:
        raise ManifestError(f"manifest schema_version {version} is not supported "
                            f"(this edgelm reads {SCHEMA_VERSION}); export the model again with this edgelm")
    return version


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    edgelm_version: str
    created_utc: str
    source: SourceInfo
    architecture: Architecture
    parameter_count: int
    quantization: QuantizationInfo
    weights_bytes: dict[str, int]
    files: list[FileEntry]
    io: IOSpec
    generation: GenerationSpec
    tools: dict[str, str]
    verification: Verification | None
    export_seconds: float = 0.0

    def __post_init__(self) -> None:
        _check_schema(self.schema_version)
        if "total" not in self.weights_bytes:
            raise ManifestError("weights_bytes.total: missing")
        n = self.architecture.num_layers
        for kind in ("past_key", "past_value", "present_key", "present_value"):
            if len(getattr(self.io, kind)) != n:
                raise ManifestError(f"io.{kind}: lists {len(getattr(self.io, kind))} tensors but "
                                    f"architecture.num_layers is {n}")
        if len({f.name for f in self.files}) != len(self.files):
            raise ManifestError("files: a file is listed twice")

    @property
    def model_file(self) -> str:
        return self.io.model_file

    @property
    def kv_dtype(self) -> KVDtype:
        return self.io.kv_dtype

    def total_file_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "edgelm_version": self.edgelm_version,
                "created_utc": self.created_utc, "source": self.source.to_dict(),
                "architecture": self.architecture.to_dict(), "parameter_count": self.parameter_count,
                "quantization": {**asdict(self.quantization), "mode": self.quantization.mode.value},
                "weights_bytes": dict(self.weights_bytes), "files": [asdict(f) for f in self.files],
                "io": self.io.to_dict(), "generation": self.generation.to_dict(), "tools": dict(self.tools),
                "verification": None if self.verification is None else asdict(self.verification),
                "export_seconds": self.export_seconds}

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Parse and check a manifest; a ManifestError names the first bad field."""
        f = Fields(d, "", ManifestError)
        version = _check_schema(f.integer("schema_version"))  # before the rest, whose shape it decides
        arch = Architecture.from_dict(f.sub("architecture").data)
        wb = f.sub("weights_bytes")
        v = f.opt_sub("verification")
        return cls(
            schema_version=version, edgelm_version=f.text("edgelm_version", max_len=64),
            created_utc=f.text("created_utc", max_len=64), source=SourceInfo.parse(f.sub("source")),
            architecture=arch, parameter_count=f.integer("parameter_count", lo=1),
            quantization=QuantizationInfo.parse(f.sub("quantization")),
            weights_bytes={k: wb.integer(k, lo=0) for k in wb.data},
            files=[FileEntry.parse(Fields(x, f"files[{i}]", ManifestError))
                   for i, x in enumerate(f.list("files", max_len=10_000))],
            io=IOSpec.parse(f.sub("io")), generation=GenerationSpec.parse(f.sub("generation"), arch.vocab_size),
            tools=f.str_map("tools", default={}), verification=None if v is None else Verification.parse(v),
            export_seconds=f.number("export_seconds", lo=0, default=0.0))


def read_manifest(folder: Path | str) -> Manifest:
    """The folder's manifest, parsed and checked (a ManifestError names the bad field)."""
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise ManifestError(f"{folder}: not a folder")
    if not path.is_file():
        raise ManifestError(f"{folder}: no {MANIFEST_NAME} (not a model folder made by edgelm export)")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES >> 20} MiB, not an edgelm manifest")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from e
    except RecursionError:
        raise ManifestError(f"{path}: unreadable manifest (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: the manifest is not a JSON object")
    try:
        return Manifest.from_dict(data)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from e


def confined_file(folder: Path | str, name: str) -> Path:
    """``folder / name``, refused unless it resolves inside the folder (no link out of it)."""
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ManifestError(f"{folder}: {name} points outside the model folder; refusing to load it")
    return path


def verify_files(folder: Path | str, manifest: Manifest, *, hashes: bool = False) -> int:
    """Check every file the manifest lists: inside the folder, present, of its size and (with
    ``hashes``) its sha256. Returns the bytes checked; a ManifestError names the first file
    that differs."""
    from ._io import sha256_file

    total = 0
    for entry in manifest.files:
        path = confined_file(folder, entry.name)
        try:
            size = path.stat().st_size
        except OSError:
            raise ManifestError(f"{folder}: {entry.name} is missing (the manifest lists it)") from None
        if size != entry.bytes:
            raise ManifestError(f"{folder}: {entry.name} has {size} bytes but the manifest says {entry.bytes}: "
                                "the folder was changed after export; export it again")
        if hashes and sha256_file(path) != entry.sha256:
            raise ManifestError(f"{folder}: {entry.name} does not match its sha256 in the manifest: "
                                "the folder was changed after export; export it again")
        total += size
    return total


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())
