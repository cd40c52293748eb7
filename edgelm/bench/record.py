"""One benchmark run as a typed, validated record: what ``edgelm bench`` measures, what a
phone sends back, what the results store holds, and what calibration and the planner read.

A run crosses trust boundaries twice (a phone's JSON output; a store file any tool may have
written), so :meth:`BenchRecord.from_dict` checks every field and names the first bad one
(``energy.joules_per_token: must be a finite number, got 'abc'``). Nothing downstream
reads the raw dict. The JSON shape is the one stores have held since the first release.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._fields import Fields
from ..arch import Architecture, KVDtype
from ..errors import EdgeLMError
from ..sampling import SamplingParams

__all__ = ["BenchRecord", "BenchModel", "BenchDevice", "BenchSettings", "BenchEnergy", "RecordError"]

KV_DTYPES = tuple(k.value for k in KVDtype)


class RecordError(EdgeLMError):
    """A benchmark record (from a store or a phone) does not have the shape of one."""


@dataclass(frozen=True)
class BenchModel:
    folder: str
    name: str | None
    manifest_sha256: str
    quant: str
    parameters: int
    weights_bytes: int
    kv_dtype: KVDtype
    architecture: Architecture

    def __post_init__(self) -> None:
        object.__setattr__(self, "kv_dtype", KVDtype(self.kv_dtype))

    @classmethod
    def parse(cls, f: Fields) -> BenchModel:
        try:
            arch = Architecture.from_dict(f.sub("architecture").data)
        except EdgeLMError as e:
            raise f.fail("architecture", str(e)) from None
        except (KeyError, TypeError, ValueError) as e:
            raise f.fail("architecture", f"not an architecture ({type(e).__name__}: {e})") from None
        name = f.data.get("name")
        return cls(f.text("folder"), None if name is None else f.text("name"), f.text("manifest_sha256", max_len=64),
                   f.text("quant", choices=("fp32", "int8", "int4")), f.integer("parameters", lo=1),
                   f.integer("weights_bytes", lo=1), KVDtype(f.text("kv_dtype", default="float32", choices=KV_DTYPES)), arch)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["architecture"] = self.architecture.to_dict()
        d["kv_dtype"] = self.kv_dtype.value
        return d


@dataclass(frozen=True)
class BenchDevice:
    id: str
    profile: str | None
    machine: str
    system: str
    node: str
    transport: str | None = None

    @classmethod
    def parse(cls, f: Fields) -> BenchDevice:
        opt = {k: (None if f.data.get(k) is None else f.text(k)) for k in ("profile", "transport")}
        return cls(f.text("id"), opt["profile"], f.text("machine", default=""), f.text("system", default=""),
                   f.text("node", default=""), opt["transport"])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["transport"] is None:
            del d["transport"]
        return d


@dataclass(frozen=True)
class BenchSettings:
    prompt_tokens: int
    new_tokens: int
    runs: int
    warmup: int
    threads: int | None
    sampling: SamplingParams
    lookup: bool = False  # prompt-lookup decoding
    #: Samples decoded in lockstep, one pass over the weights per step for all of them;
    #: decode tokens/s and J/token are then the aggregate over the samples.
    sequences: int = 1

    @classmethod
    def parse(cls, f: Fields) -> BenchSettings:
        s = f.sub("sampling", default={})
        try:
            sampling = SamplingParams(**s.data)
        except (TypeError, EdgeLMError) as e:
            raise f.fail("sampling", str(e)) from None
        threads = f.data.get("threads")
        return cls(f.integer("prompt_tokens", lo=1), f.integer("new_tokens", lo=2), f.integer("runs", lo=1),
                   f.integer("warmup", lo=0), None if threads is None else f.integer("threads", lo=1), sampling,
                   f.flag("lookup", default=False), f.integer("sequences", lo=1, hi=64, default=1))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "sampling": self.sampling.to_dict()}


@dataclass(frozen=True)
class BenchEnergy:
    """Joules per generated token and where the figure comes from (``measured:METER`` or
    ``estimated``); the other fields say how (they vary by source and are optional)."""

    joules_per_token: float
    source: str
    estimate_device: str | None = None
    method: str | None = None
    scope: str | None = None
    idle_power_w: float | None = None
    active_power_w: float | None = None
    duration_s: float | None = None
    samples: int | None = None
    sample_rate_hz: float | None = None
    sign_convention: str | None = None
    charging: bool = False
    warning: str | None = None

    @property
    def measured(self) -> bool:
        return self.source.startswith("measured")

    @classmethod
    def parse(cls, f: Fields) -> BenchEnergy:
        def opt(key: str, kind: str) -> Any:
            if f.data.get(key) is None:
                return None
            return f.number(key, lo=0.0) if kind == "float" else (f.integer(key, lo=0) if kind == "int" else f.text(key))

        return cls(f.number("joules_per_token", lo=0.0), f.text("source"), opt("estimate_device", "str"),
                   opt("method", "str"), opt("scope", "str"), opt("idle_power_w", "float"),
                   opt("active_power_w", "float"), opt("duration_s", "float"), opt("samples", "int"),
                   opt("sample_rate_hz", "float"), opt("sign_convention", "str"), f.flag("charging", default=False),
                   opt("warning", "str"))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None or k in ("joules_per_token", "source", "warning")}


@dataclass(frozen=True)
class BenchRecord:
    """One ``edgelm bench`` run. ``id`` is given by the results store when it is appended."""

    time_utc: str
    model: BenchModel
    device: BenchDevice
    settings: BenchSettings
    ttft_ms: float
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    decode_tokens_per_s_p10: float
    decode_tokens_per_s_p90: float
    load_s: float
    peak_rss_bytes: int
    peak_rss_scope: str
    sampling_share: float
    energy: BenchEnergy
    #: Decoded tokens per pass over the weights (1 without prompt lookup).
    tokens_per_pass: float = 1.0
    versions: dict[str, str] = field(default_factory=dict)
    push: dict[str, Any] | None = None
    id: int | None = None
    after_interrupted_write: bool = False

    def __post_init__(self) -> None:
        if self.decode_tokens_per_s <= 0 or self.ttft_ms <= 0:
            raise RecordError("a benchmark record needs decode tokens/s and TTFT > 0")

    @property
    def joules_per_sequence(self) -> float:
        """Energy of one sample's new tokens (with several sequences, their aggregate
        joules per token times the tokens each generated)."""
        return self.energy.joules_per_token * self.settings.new_tokens

    def with_id(self, run_id: int, after_interrupted_write: bool = False) -> BenchRecord:
        return dataclasses.replace(self, id=run_id, after_interrupted_write=after_interrupted_write)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.id is not None:
            d["id"] = self.id
        d.update({"time_utc": self.time_utc, "model": self.model.to_dict(), "device": self.device.to_dict(),
                  "settings": self.settings.to_dict()})
        for k in ("ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "decode_tokens_per_s_p10",
                  "decode_tokens_per_s_p90", "load_s", "peak_rss_bytes", "peak_rss_scope", "sampling_share",
                  "tokens_per_pass"):
            d[k] = getattr(self, k)
        d["energy"] = self.energy.to_dict()
        d["versions"] = dict(self.versions)
        if self.push is not None:
            d["push"] = self.push
        if self.after_interrupted_write:
            d["after_interrupted_write"] = True
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> BenchRecord:
        """Parse and check a record; :class:`RecordError` names the first bad field."""
        f = Fields(data, where, RecordError)
        push = f.opt_sub("push")
        try:
            return cls(
                time_utc=f.text("time_utc", max_len=64), model=BenchModel.parse(f.sub("model")),
                device=BenchDevice.parse(f.sub("device")), settings=BenchSettings.parse(f.sub("settings")),
                ttft_ms=f.number("ttft_ms", positive=True), prefill_tokens_per_s=f.number("prefill_tokens_per_s", lo=0),
                decode_tokens_per_s=f.number("decode_tokens_per_s", positive=True),
                decode_tokens_per_s_p10=f.number("decode_tokens_per_s_p10", lo=0),
                decode_tokens_per_s_p90=f.number("decode_tokens_per_s_p90", lo=0),
                load_s=f.number("load_s", lo=0), peak_rss_bytes=f.integer("peak_rss_bytes", lo=0),
                peak_rss_scope=f.text("peak_rss_scope", default="process lifetime"),
                sampling_share=f.number("sampling_share", lo=0, hi=1), energy=BenchEnergy.parse(f.sub("energy")),
                tokens_per_pass=f.number("tokens_per_pass", lo=1, hi=1e3, default=1.0),
                versions=f.str_map("versions", default={}),
                push=None if push is None else {"remote": push.text("remote"), "files_pushed": [
                    str(x) for x in push.list("files_pushed", default=[])], "seconds": push.number("seconds", lo=0)},
                id=None if f.data.get("id") is None else f.integer("id", lo=1),
                after_interrupted_write=f.flag("after_interrupted_write", default=False))
        except RecordError:
            raise
        except EdgeLMError as e:
            raise RecordError(f"{where}: {e}") from None
