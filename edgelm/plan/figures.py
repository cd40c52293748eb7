"""Plots for ``edgelm plan --sweep``: battery hours against model size per quantization
on one device (DRAM cut-off marked), and one model across devices."""

from __future__ import annotations

from pathlib import Path

from ..manifest import Quant
from ..profiler.devices import DeviceProfile, list_profiles
from .planner import SWEEP_PARAMS, PlanError, PlanResult, plan

__all__ = ["sweep", "plot_sweep", "plot_devices", "largest"]

QUANTS = [Quant.FP32, Quant.INT8, Quant.INT4]
_COLORS = {Quant.FP32: "#d62728", Quant.INT8: "#1f77b4", Quant.INT4: "#2ca02c"}


def sweep(device: DeviceProfile, tokens_per_day: float, context: int, app_dram_share: float,
          battery_target_percent: float, samples_per_request: int = 1) -> dict[Quant, list[PlanResult]]:
    return {q: [plan(device, params=f"{p / 1e6:g}M", quant=q.value, tokens_per_day=tokens_per_day, context=context,
                     app_dram_share=app_dram_share, battery_target_percent=battery_target_percent,
                     samples_per_request=samples_per_request)
                for p in SWEEP_PARAMS] for q in QUANTS}


#: The named shapes ``plan --sweep`` lists beside the parameter sweep: the models people
#: ship on devices (random-weight presets of their published shapes, and SmolLM2-135M).
SWEEP_PRESETS = ("smollm2-135m", "gemma3-270m", "smollm2-360m", "mobilellm-350m", "qwen3-0.6b", "gemma3-1b",
                 "mobilellm-1b", "llama3.2-1b")


def sweep_presets(device: DeviceProfile, tokens_per_day: float, context: int, app_dram_share: float,
                  battery_target_percent: float, samples_per_request: int = 1) -> dict[Quant, list[PlanResult]]:
    return {q: [plan(device, model=name, quant=q.value, tokens_per_day=tokens_per_day, context=context,
                     app_dram_share=app_dram_share, battery_target_percent=battery_target_percent,
                     samples_per_request=samples_per_request)
                for name in SWEEP_PRESETS] for q in QUANTS}


def largest(results: dict[Quant, list[PlanResult]]) -> PlanResult | None:
    ok = [r for rs in results.values() for r in rs if r.ok]
    return max(ok, key=lambda r: (r.report.model.arch.parameter_count(), -r.joules_per_token), default=None)


def _save(fig, stem: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """Write the figure as PNG and SVG, each through a temporary file and a rename."""
    out = []
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            path = stem.with_suffix(f".{ext}")
            tmp = path.with_name(f".{path.name}.tmp")
            try:
                fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
            out.append(path)
    except OSError as e:
        raise PlanError(f"cannot write the figures to {stem.parent}: {e.strerror or e}") from e
    return out


def plot_sweep(results: dict[Quant, list[PlanResult]], device: DeviceProfile, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for q, rs in results.items():
        xs = [r.report.model.arch.parameter_count() / 1e9 for r in rs]
        ys = [r.hours_at_rate(10.0) or 0.0 for r in rs]
        ax.plot(xs, ys, "-", color=_COLORS[q], label=q.value, lw=2)
        fit_x = [x for x, r in zip(xs, rs, strict=True) if r.report.fits]
        fit_y = [y for y, r in zip(ys, rs, strict=True) if r.report.fits]
        no_x = [x for x, r in zip(xs, rs, strict=True) if not r.report.fits]
        no_y = [y for y, r in zip(ys, rs, strict=True) if not r.report.fits]
        ax.plot(fit_x, fit_y, "o", color=_COLORS[q], ms=7)
        ax.plot(no_x, no_y, "x", color=_COLORS[q], ms=9, mew=2)
        if no_x:
            ax.axvline(min(no_x), color=_COLORS[q], ls=":", lw=1.2)
    budget_gb = results[QUANTS[0]][0].report.dram_budget_bytes / 1e9
    ax.plot([], [], "kx", ms=9, mew=2, label=f"over the DRAM budget ({budget_gb:.1f} GB)")
    ax.plot([], [], "k:", label="first size over budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.xaxis.set_major_locator(FixedLocator([0.125, 0.35, 0.6, 1, 1.5, 3, 7]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}B" if v >= 1 else f"{v * 1000:g}M"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(FixedLocator([1, 2, 4, 8, 12, 24, 48, 96, 192]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} h"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model parameters (billions)")
    ax.set_ylabel("hours of battery generating 10 tokens/s")
    ax.axhline(24, color="grey", lw=1, ls="--")
    ax.text(0.13, 24 * 1.06, "one day", color="grey", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    kj = (device.battery_j or 0) / 1e3
    ax.set_title(f"{device.name}: battery life vs model size ({kj:.0f} kJ battery, estimated)")
    ax.legend(title="weights")
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def plot_devices(model: str | None, params: str | None, quant: str | None, tokens_per_day: float, context: int,
                 app_dram_share: float, stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = [d for d in list_profiles() if d.battery_j is not None]
    plans = [plan(d, model=model, params=params, quant=quant, tokens_per_day=tokens_per_day, context=context,
                  app_dram_share=app_dram_share) for d in devices]
    plans.sort(key=lambda p: p.battery_percent_per_day or 0)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(plans) + 1.5))
    names = [p.report.device.name for p in plans]
    vals = [p.battery_percent_per_day or 0 for p in plans]
    colors = ["#2ca02c" if p.report.fits else "#d62728" for p in plans]
    bars = ax.barh(names, vals, color=colors)
    for bar, p in zip(bars, plans, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {p.battery_percent_per_day:.1f}%  ({p.decode_tokens_per_s:.0f} tok/s)"
                + ("" if p.report.fits else "  over DRAM budget"), va="center", fontsize=9)
    ax.set_xlabel(f"battery per day for {tokens_per_day:,.0f} tokens/day (%, estimated)")
    m = plans[0].report.model
    ax.set_title(f"{m.name} ({m.quant.value}) across devices")
    ax.set_xlim(0, max(vals) * 1.9 if vals and max(vals) > 0 else 1)
    ax.grid(True, axis="x", alpha=0.3)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
