"""``edgelm profile``: DRAM, speed, energy and battery for a model on a device, without
running it there. The model is an exported folder (its manifest is read) or an
architecture preset with a quantization (for models not exported yet)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch import ARCH_PRESETS, SMOLLM2_135M, Architecture, Family, KVDtype, fit_ffn, ring_cache
from ..errors import ProfileError
from ..manifest import Quant, kv_dtype_for, read_manifest
from .devices import DeviceProfile, get_profile
from .energy import EnergyEstimate, estimate_energy
from .memory import MemoryEstimate, estimate_memory

__all__ = ["ProfileReport", "profile_model", "resolve_model", "format_report", "DEFAULT_APP_DRAM_SHARE",
           "compare_shapes"]

#: MobileLLM (Liu et al., 2024, section 1) argues an app should use well under a tenth of DRAM.
DEFAULT_APP_DRAM_SHARE = 0.10


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: Architecture
    quant: Quant
    weights_bytes: float | None  # None: computed from the architecture
    tokenizer_json_bytes: float
    source: str  # "manifest" or "preset"
    linear_kernel: str | None = None  # the manifest's; None: the export default
    kv_dtype: KVDtype | None = None  # the manifest's io.kv_dtype; None: what export would write


@dataclass(frozen=True)
class ProfileReport:
    model: ModelSpec
    device: DeviceProfile
    memory: MemoryEstimate
    energy: EnergyEstimate
    app_dram_share: float

    @property
    def dram_budget_bytes(self) -> float:
        return self.device.dram_bytes * self.app_dram_share

    @property
    def fits(self) -> bool:
        return self.memory.peak_bytes <= self.dram_budget_bytes

    def to_dict(self) -> dict[str, Any]:
        a = self.model.arch
        return {
            "model": {"name": self.model.name, "source": self.model.source, "quant": self.model.quant.value,
                      "parameters": a.parameter_count(), "layers": a.num_layers, "hidden": a.hidden_size},
            "device": {"id": self.device.id, "name": self.device.name, "dram_bytes": self.device.dram_bytes,
                       "assumptions": self.device.assumptions()},
            "dram": {**self.memory.to_dict(), "budget_bytes": self.dram_budget_bytes,
                     "app_dram_share": self.app_dram_share, "fits": self.fits},
            "speed": {"decode_tokens_per_s": self.energy.decode_tokens_per_s, "bound": self.energy.bound,
                      "bytes_per_token": self.energy.bytes_per_token},
            "energy": {"joules_per_token": self.energy.joules_per_token, "power_mw": self.energy.power_mw,
                       "soc_joules_per_token": self.energy.soc_joules_per_token,
                       "dram_joules_per_token": self.energy.dram_joules_per_token,
                       "compute_joules_per_token": self.energy.compute_joules_per_token,
                       "tokens_per_battery_percent": self.energy.tokens_per_battery_percent,
                       "battery_j": self.energy.battery_j, "source": "estimated"},
        }


def resolve_model(model: str, quant: str | None = None) -> ModelSpec:
    """A model folder (manifest), or a preset name with a quantization (default int4)."""
    path = Path(model)
    if path.is_dir():
        m = read_manifest(path)
        if quant is not None and Quant(quant) is not m.quantization.mode:
            raise ProfileError(f"{model} is a {m.quantization.mode.value} folder; --quant {quant} does not apply")
        tok = path / "tokenizer.json"
        return ModelSpec(str(model), m.architecture, m.quantization.mode, float(m.weights_bytes["total"]),
                         float(tok.stat().st_size) if tok.exists() else 0.0, "manifest", linear_kernel=m.quantization.linear_kernel,
                         kv_dtype=m.kv_dtype)
    q = Quant(quant or "int4")
    if model in ARCH_PRESETS:
        return ModelSpec(model, ARCH_PRESETS[model], q, None, 1e4, "preset")
    if model == "smollm2-135m":
        return ModelSpec(model, SMOLLM2_135M, q, None, 1.76e6, "preset")
    presets = ", ".join(sorted([*ARCH_PRESETS, "smollm2-135m"]))
    raise ProfileError(f"{model}: not a model folder or a preset (presets: {presets})")


def profile_model(model: str | ModelSpec, device: str | DeviceProfile, *, context: int = 2048,
                  quant: str | None = None, app_dram_share: float = DEFAULT_APP_DRAM_SHARE,
                  prompt_tokens: int = 128, sequences: int = 1) -> ProfileReport:
    """DRAM and energy of ``model`` on ``device``; with ``sequences`` > 1, of that many
    samples decoded in parallel (a KV cache each, one pass over the weights per step for
    all: the energy is per token of their aggregate)."""
    spec = model if isinstance(model, ModelSpec) else resolve_model(model, quant)
    dev = device if isinstance(device, DeviceProfile) else get_profile(device)
    if context < 1:
        raise ProfileError(f"context must be at least 1 token, got {context}")
    if context > spec.arch.max_context:
        raise ProfileError(f"context {context} exceeds the model's maximum of {spec.arch.max_context}")
    if not 0 < app_dram_share <= 1:
        raise ProfileError(f"app DRAM share must be in (0, 1], got {app_dram_share}")
    kv_dtype = spec.kv_dtype or kv_dtype_for(spec.quant, spec.linear_kernel)
    mem = estimate_memory(spec.arch, spec.quant, context=context, weights_bytes=spec.weights_bytes,
                          tokenizer_json_bytes=spec.tokenizer_json_bytes, prompt_tokens=prompt_tokens,
                          linear_kernel=spec.linear_kernel, kv_dtype=kv_dtype, sequences=sequences)
    energy = estimate_energy(spec.arch, dev, mem.weights_file_bytes, context_tokens=min(context, 512),
                             kv_dtype=kv_dtype, sequences=sequences)
    return ProfileReport(spec, dev, mem, energy, app_dram_share)


def compare_shapes(params_target: float, device: str | DeviceProfile, quant: str = "int4",
                   context: int = 2048) -> list[ProfileReport]:
    """Deep-and-thin vs wide-and-shallow at about the same parameter count (MobileLLM's
    comparison): same device, same quantization."""
    shapes = {"deep-and-thin (30 x 576)": (30, 576, 9, 3), "balanced (16 x 768)": (16, 768, 12, 4),
              "wide-and-shallow (8 x 1024)": (8, 1024, 16, 4)}
    reports = []
    for name, (layers, hidden, heads, kv) in shapes.items():
        # The FFN width that brings the parameter count to the target.
        arch = fit_ffn(Architecture(Family.LLAMA, layers, hidden, heads, kv, hidden // heads, 64, 32000, 2048),
                       params_target)
        spec = ModelSpec(name, arch, Quant(quant), None, 1e4, "preset")
        reports.append(profile_model(spec, device, context=context))
    return reports


def _mb(x: float) -> str:
    return f"{x / 1e6:,.1f} MB"


def _ring_note(r: ProfileReport) -> str:
    """Where window layers keep rings: how many, of how many rows (what the KV figure counts)."""
    a, context = r.model.arch, r.memory.context
    kv_dtype = r.model.kv_dtype or kv_dtype_for(r.model.quant, r.model.linear_kernel)
    rings = [i for i in range(a.num_layers) if a.kv_rows(i, context, ring_cache(kv_dtype)) < context]
    if not rings:
        return ""
    return f"  ({len(rings)} window layers keep rings of {a.kv_rows(rings[0], context)} rows)"


def format_report(r: ProfileReport) -> str:
    m, e, d = r.memory, r.energy, r.device
    a = r.model.arch
    lines = [f"{r.model.name} ({r.model.quant.value}, {a.parameter_count() / 1e6:.0f}M parameters, "
             f"{a.num_layers} x {a.hidden_size}) on {d.name}  [estimated]",
             f"  DRAM at context {m.context}:",
             f"    weights (file)        {_mb(m.weights_file_bytes):>12}",
             f"    weights (resident)    {_mb(m.weights_resident_bytes):>12}",
             f"    KV cache              {_mb(m.kv_cache_bytes):>12}{_ring_note(r)}",
             f"    prefill workspace     {_mb(m.workspace_bytes):>12}  ({m.prompt_tokens}-token prompt)",
             f"    runtime + tokenizer   {_mb(m.runtime_bytes + m.tokenizer_bytes):>12}",
             f"    peak                  {_mb(m.peak_bytes):>12}",
             f"    budget                {_mb(r.dram_budget_bytes):>12}  ({r.app_dram_share:.0%} of {d.dram_bytes / 1e9:.0f} GB)"
             f"  -> {'FITS' if r.fits else 'DOES NOT FIT'}",
             f"  decode                  {e.decode_tokens_per_s:8.1f} tokens/s ({e.bound}-bound, "
             f"{e.bytes_per_token / 1e6:.1f} MB read per token)",
             f"  energy                  {e.joules_per_token * 1000:8.2f} mJ/token  (SoC {e.soc_joules_per_token * 1000:.2f}, "
             f"DRAM {e.dram_joules_per_token * 1000:.2f}, arithmetic {e.compute_joules_per_token * 1000:.2f})",
             f"  power while generating  {e.power_mw:8.0f} mW"]
    if e.tokens_per_battery_percent is not None:
        lines.append(f"  tokens per 1% battery   {e.tokens_per_battery_percent:8,.0f}  "
                     f"(battery {d.battery_wh:.1f} Wh = {(d.battery_j or 0) / 1e3:.1f} kJ)")
    if d.assumptions():
        lines.append(f"  assumed device figures: {', '.join(d.assumptions())} (see {d.path})")
    return "\n".join(lines)
