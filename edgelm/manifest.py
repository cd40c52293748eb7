"""``edgelm.json``: the contract between export and everything downstream.

Export knows the architecture, the quantization, the bytes of every kind of weight
and how the model was verified; it writes them here once. The runtime, the profiler,
bench and plan read them back with :func:`read_manifest` and never re-derive them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from ._io import write_json
from .arch import Architecture
from .errors import ManifestError

__all__ = ["MANIFEST_NAME", "LINEAR_KERNELS", "SCHEMA_VERSION", "kv_dtype_for", "Quant", "QuantizationInfo", "Verification", "FileEntry",
           "Manifest", "read_manifest", "write_manifest"]

MANIFEST_NAME = "edgelm.json"
#: What may compute the quantized linears (QuantizationInfo.linear_kernel); the first is export's default.
LINEAR_KERNELS = ("edgelm", "matmulnbits")
SCHEMA_VERSION = 2  # 2: BlockQuantMatMul takes float16 scales and block mins


def kv_dtype_for(linear_kernel: str | None) -> str:
    """The KV cache's element type an export writes (the manifest's ``io.kv_dtype``):
    float16 where edgelm's Attention operator reads it (folders whose quantized linears run
    on edgelm's kernel), float32 under ONNX Runtime's GroupQueryAttention (fp32 and
    ``--kernel matmulnbits`` folders)."""
    return "float16" if linear_kernel == "edgelm" else "float32"


class Quant(str, Enum):
    FP32 = "fp32"
    INT8 = "int8"
    INT4 = "int4"


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


@dataclass(frozen=True)
class FileEntry:
    name: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    edgelm_version: str
    created_utc: str
    source: dict[str, Any]
    architecture: Architecture
    parameter_count: int
    quantization: QuantizationInfo
    weights_bytes: dict[str, int]
    files: list[FileEntry]
    io: dict[str, Any]
    generation: dict[str, Any]
    tools: dict[str, str]
    verification: Verification | None
    export_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema_version {self.schema_version} is not supported "
                                f"(this edgelm reads {SCHEMA_VERSION}); export the model again with this edgelm")

    @property
    def model_file(self) -> str:
        return str(self.io.get("model_file", "model.onnx"))

    def total_file_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["architecture"] = self.architecture.to_dict()
        d["quantization"]["mode"] = self.quantization.mode.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            q = dict(d["quantization"])
            v = d.get("verification")
            return cls(
                schema_version=int(d["schema_version"]),
                edgelm_version=str(d["edgelm_version"]),
                created_utc=str(d["created_utc"]),
                source=dict(d["source"]),
                architecture=Architecture.from_dict(d["architecture"]),
                parameter_count=int(d["parameter_count"]),
                quantization=QuantizationInfo(**q),
                weights_bytes={k: int(x) for k, x in d["weights_bytes"].items()},
                files=[FileEntry(**f) for f in d["files"]],
                io=dict(d["io"]),
                generation=dict(d["generation"]),
                tools=dict(d["tools"]),
                verification=None if v is None else Verification(**v),
                export_seconds=float(d.get("export_seconds", 0.0)),
            )
        except KeyError as e:
            raise ManifestError(f"manifest is missing the field {e.args[0]!r}") from e
        except (TypeError, ValueError) as e:
            raise ManifestError(f"manifest has a bad value: {e}") from e


def read_manifest(folder: Path | str) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    if not Path(folder).is_dir():
        raise ManifestError(f"{folder}: not a folder")
    if not path.exists():
        raise ManifestError(f"{folder}: no {MANIFEST_NAME} (not a model folder made by edgelm export)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: the manifest is not a JSON object")
    try:
        return Manifest.from_dict(data)
    except ManifestError as e:
        raise ManifestError(f"{path}: {e}") from e


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json(Path(folder) / MANIFEST_NAME, manifest.to_dict())
