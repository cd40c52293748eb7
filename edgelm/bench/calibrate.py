"""Calibrate a device profile against measured benchmark runs.

From runs stored by ``edgelm bench`` with measured energy on a device, fit two of the
profile's coefficients and report the estimate's error before and after:

* the sustained-bandwidth fraction, from measured decode speed:
  ``t = bytes / (peak x f) + layers x overhead``  ->  f = bytes / (peak x (t - layers x overhead))
  (median over runs; the compute bound is ignored: decode of these models is memory-bound);
* the active power, by least squares on ``J = P x t + bytes x 8 x e_DRAM`` with the
  measured t (one coefficient, so it is determined even by one run).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from ..arch import Architecture, KVDtype
from ..errors import ProfileError
from ..profiler.devices import DeviceProfile
from ..profiler.energy import OVERHEAD_S_PER_LAYER, bench_context, bytes_per_token, estimate_energy
from .record import BenchRecord

__all__ = ["Calibration", "calibrate"]


@dataclass(frozen=True)
class Calibration:
    device: DeviceProfile
    calibrated: DeviceProfile
    runs: int
    error_before: float  # mean |estimate - measured| / measured, J/token
    error_after: float
    speed_error_before: float
    speed_error_after: float

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device.id, "runs": self.runs,
                "active_power_w": {"before": self.device.active_power_w, "after": self.calibrated.active_power_w},
                "sustained_fraction": {"before": self.device.sustained_fraction,
                                       "after": self.calibrated.sustained_fraction},
                "joules_per_token_error": {"before": self.error_before, "after": self.error_after},
                "decode_speed_error": {"before": self.speed_error_before, "after": self.speed_error_after}}


def _usable(records: list[BenchRecord], device: DeviceProfile) -> list[BenchRecord]:
    return [r for r in records if r.energy.measured and device.id in (r.device.profile, r.device.id)
            and not r.energy.charging and r.energy.joules_per_token > 0]


def _errors(device: DeviceProfile, runs: list[tuple[Architecture, float, int, float, float, KVDtype]]
            ) -> tuple[float, float]:
    e_err, s_err = [], []
    for arch, wbytes, ctx, j_meas, tps_meas, kv in runs:
        est = estimate_energy(arch, device, wbytes, context_tokens=ctx, kv_dtype=kv)
        e_err.append(abs(est.joules_per_token - j_meas) / j_meas)
        s_err.append(abs(est.decode_tokens_per_s - tps_meas) / tps_meas)
    return statistics.mean(e_err), statistics.mean(s_err)


def calibrate(device: DeviceProfile, records: list[BenchRecord]) -> Calibration:
    usable = _usable(records, device)
    if not usable:
        raise ProfileError(f"no stored run with measured energy for {device.id}: run edgelm bench on the device "
                           f"(--device adb:SERIAL, or --as-profile {device.id} on the device itself) first")
    runs = []
    for r in usable:
        ctx = bench_context(r.settings.prompt_tokens, r.settings.new_tokens)
        runs.append((r.model.architecture, float(r.model.weights_bytes), ctx, r.energy.joules_per_token,
                     r.decode_tokens_per_s, r.model.kv_dtype))
    fractions, num, den = [], 0.0, 0.0
    for arch, wbytes, ctx, j, tps, kv in runs:
        t = 1.0 / tps
        nbytes = bytes_per_token(arch, wbytes, ctx, kv)
        t_mem = t - arch.num_layers * OVERHEAD_S_PER_LAYER
        if t_mem > 0:
            fractions.append(min(1.0, nbytes / (device.peak_bandwidth_bps * t_mem)))
        dram = nbytes * 8 * device.dram_energy_pj_per_bit * 1e-12
        num += t * (j - dram)
        den += t * t
    power = num / den if den > 0 else device.active_power_w
    if power <= 0:
        raise ProfileError(f"measured energy on {device.id} is below the DRAM energy alone; check the meter")
    fraction = statistics.median(fractions) if fractions else device.sustained_fraction
    note = f"measured: fitted to {len(runs)} edgelm bench run(s)"
    calibrated = dataclasses.replace(device, active_power_w=power, sustained_fraction=fraction,
                                     sources={**device.sources, "power.active": note,
                                              "memory.sustained_fraction": note})
    before = _errors(device, runs)
    after = _errors(calibrated, runs)
    return Calibration(device, calibrated, len(runs), before[0], after[0], before[1], after[1])
