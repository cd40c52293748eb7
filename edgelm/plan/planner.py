"""``edgelm plan``: a usage pattern on a device -> battery per day, hours, DRAM yes/no.

J/token comes from the results store when ``edgelm bench`` measured this model (same
manifest) on this device; otherwise from the profiler's estimate. The answer says which.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arch import ARCH_PRESETS, shape_for_params
from ..errors import EdgeLMError
from ..manifest import MANIFEST_NAME, Quant
from ..profiler.devices import DeviceProfile, get_profile
from ..profiler.report import DEFAULT_APP_DRAM_SHARE, ModelSpec, ProfileReport, profile_model, resolve_model

if TYPE_CHECKING:
    from ..bench.record import BenchRecord

__all__ = ["PlanError", "PlanResult", "plan", "spec_for_params", "parse_params", "SWEEP_PARAMS", "format_plan"]

#: Reference shapes (layers, hidden, heads, KV heads, FFN) by parameter count: MobileLLM
#: (Liu et al. 2024, Table 9) up to 1B, then Llama-3.2-3B and Llama-2-7B/13B shapes.
_SHAPES: list[tuple[float, tuple[int, int, int, int, int]]] = [
    (125e6, (30, 576, 9, 3, 1536)), (350e6, (32, 960, 15, 5, 2560)), (600e6, (40, 1152, 18, 6, 3072)),
    (1.0e9, (54, 1280, 20, 5, 3584)), (3.0e9, (28, 3072, 24, 8, 8192)), (7.0e9, (32, 4096, 32, 32, 11008)),
    (13e9, (40, 5120, 40, 40, 13824)),
]
SWEEP_PARAMS = [125e6, 350e6, 600e6, 1e9, 1.5e9, 3e9, 7e9]


class PlanError(EdgeLMError):
    """Bad usage numbers or an impossible plan."""


def parse_params(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s*", text)
    if not m:
        raise PlanError(f"cannot read {text!r} as a parameter count (e.g. 350M, 1.5B)")
    n = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9}[m.group(2).lower()]
    if not 1e6 <= n <= 1e12:
        raise PlanError(f"parameter count {text} is out of range (1M to 1T)")
    return n


def spec_for_params(params: float, quant: Quant | str) -> ModelSpec:
    """A Llama-family shape near ``params`` (arch.shape_for_params: the closest reference
    shape, its FFN width fitted to the count)."""
    return ModelSpec(_label(params), shape_for_params(params), Quant(quant), None, 2e6, "params")


def _label(params: float) -> str:
    return f"{params / 1e9:g}B" if params >= 1e9 else f"{params / 1e6:g}M"


@dataclass(frozen=True)
class PlanResult:
    report: ProfileReport
    tokens_per_day: float
    joules_per_token: float
    joules_source: str  # "estimated" or "measured:<meter> (run N)"
    decode_tokens_per_s: float
    battery_target_percent: float
    #: Samples drawn for each request (best-of-n, self-consistency), decoded in parallel:
    #: the device generates this many times tokens_per_day, at the parallel J/token and
    #: aggregate tokens/s.
    samples_per_request: int = 1

    @property
    def generated_tokens_per_day(self) -> float:
        return self.tokens_per_day * self.samples_per_request

    @property
    def battery_percent_per_day(self) -> float | None:
        bj = self.report.device.battery_j
        return None if bj is None else 100 * self.generated_tokens_per_day * self.joules_per_token / bj

    @property
    def hours_continuous(self) -> float | None:
        bj = self.report.device.battery_j
        return None if bj is None else bj / (self.joules_per_token * self.decode_tokens_per_s) / 3600

    def hours_at_rate(self, tokens_per_s: float = 10.0) -> float | None:
        """Hours a full battery lasts generating at ``tokens_per_s`` (MobileLLM's framing);
        a model slower than that runs flat out at its own speed."""
        bj = self.report.device.battery_j
        if bj is None:
            return None
        return bj / (self.joules_per_token * min(tokens_per_s, self.decode_tokens_per_s)) / 3600

    @property
    def limiting_factor(self) -> str:
        if not self.report.fits:
            return "DRAM"
        pct = self.battery_percent_per_day
        if pct is not None and pct > self.battery_target_percent:
            return "battery"
        return "none"

    @property
    def ok(self) -> bool:
        return self.limiting_factor == "none"

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.report.device.id, "model": self.report.model.name,
                "quant": self.report.model.quant.value, "parameters": self.report.model.arch.parameter_count(),
                "tokens_per_day": self.tokens_per_day, "joules_per_token": self.joules_per_token,
                "joules_source": self.joules_source, "decode_tokens_per_s": self.decode_tokens_per_s,
                "samples_per_request": self.samples_per_request,
                "generated_tokens_per_day": self.generated_tokens_per_day,
                "battery_percent_per_day": self.battery_percent_per_day, "hours_continuous": self.hours_continuous,
                "hours_at_10_tokens_per_s": self.hours_at_rate(10.0),
                "dram_peak_bytes": self.report.memory.peak_bytes, "dram_budget_bytes": self.report.dram_budget_bytes,
                "fits_dram": self.report.fits, "battery_target_percent": self.battery_target_percent,
                "limiting_factor": self.limiting_factor}


def _measured(model: str, device: DeviceProfile, store_records: list[BenchRecord],
              sequences: int = 1) -> BenchRecord | None:
    path = Path(model) / MANIFEST_NAME
    if not path.exists():
        return None
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    hits = [r for r in store_records if r.model.manifest_sha256 == sha and r.device.profile == device.id
            and r.energy.measured and r.settings.sequences == sequences]
    return hits[-1] if hits else None


def plan(device: str | DeviceProfile, *, model: str | None = None, params: str | None = None,
         quant: str | None = None, tokens_per_day: float, context: int = 2048,
         app_dram_share: float = DEFAULT_APP_DRAM_SHARE, battery_target_percent: float = 10.0,
         store_records: list[BenchRecord] | None = None, samples_per_request: int = 1) -> PlanResult:
    """``tokens_per_day`` of replies; with ``samples_per_request`` N > 1 each reply is
    chosen from N samples decoded in parallel, priced at the parallel cost (a bench run of
    this model on this device with ``--sequences N`` where the store has one, else the
    energy model's N-sequence estimate) and with N KV caches in DRAM."""
    if isinstance(samples_per_request, bool) or not isinstance(samples_per_request, int) \
            or not 1 <= samples_per_request <= 64:
        raise PlanError(f"samples per request must be an integer in [1, 64], got {samples_per_request!r}")
    if not math.isfinite(tokens_per_day) or tokens_per_day < 0:
        raise PlanError(f"tokens per day must be a number >= 0, got {tokens_per_day}")
    if tokens_per_day > 1e9:
        raise PlanError(f"{tokens_per_day:g} tokens per day is absurd (over 11,000 tokens every second)")
    if not 0 < battery_target_percent <= 100:
        raise PlanError(f"battery target must be in (0, 100] percent, got {battery_target_percent}")
    if (model is None) == (params is None):
        raise PlanError("give exactly one of --model DIR / --preset NAME or --params N")
    dev = device if isinstance(device, DeviceProfile) else get_profile(device)
    if model is not None:
        spec = resolve_model(model, quant)
    else:
        assert params is not None
        spec = spec_for_params(parse_params(params), quant or "int4")
    n = samples_per_request
    report = profile_model(spec, dev, context=min(context, spec.arch.max_context), app_dram_share=app_dram_share,
                           sequences=n)
    j, src, tps = report.energy.joules_per_token, "estimated", report.energy.decode_tokens_per_s
    if model is not None and store_records:
        hit = _measured(model, dev, store_records, n)
        if hit is not None:
            j, tps = hit.energy.joules_per_token, hit.decode_tokens_per_s
            src = f"{hit.energy.source} (run {hit.id})"
    if n > 1:
        src += f", {n} samples in parallel"
    return PlanResult(report, float(tokens_per_day), j, src, tps, battery_target_percent, n)


def format_plan(p: PlanResult) -> str:
    r = p.report
    lines = [f"plan: {r.model.name} ({r.model.quant.value}, {r.model.arch.parameter_count() / 1e6:.0f}M) on "
             f"{r.device.name}, {p.tokens_per_day:,.0f} tokens/day"]
    if p.samples_per_request > 1:
        n = p.samples_per_request
        lines += [f"  samples             {n:8d} a request, decoded in parallel (one pass over the weights a step "
                  f"for all {n}; {p.generated_tokens_per_day:,.0f} tokens generated a day)",
                  f"  energy              {p.joules_per_token * 1000:8.2f} mJ/token  [{p.joules_source}]",
                  f"  decode              {p.decode_tokens_per_s:8.1f} tokens/s for the {n} together, "
                  f"{p.decode_tokens_per_s / n:.1f} each"]
    else:
        lines += [f"  energy              {p.joules_per_token * 1000:8.2f} mJ/token  [{p.joules_source}]",
                  f"  decode              {p.decode_tokens_per_s:8.1f} tokens/s"]
    if p.battery_percent_per_day is not None:
        lines += [f"  battery per day     {p.battery_percent_per_day:8.2f} %  (target <= {p.battery_target_percent:g} %)",
                  f"  continuous use      {p.hours_continuous:8.1f} hours on a full battery"]
    else:
        lines.append("  battery             none in this device profile")
    lines += [f"  DRAM                {r.memory.peak_bytes / 1e6:8.1f} MB of a {r.dram_budget_bytes / 1e6:,.0f} MB budget "
              f"-> {'fits' if r.fits else 'DOES NOT FIT'}",
              f"  limiting factor     {p.limiting_factor}"]
    return "\n".join(lines)


def presets() -> list[str]:
    return sorted(ARCH_PRESETS)
