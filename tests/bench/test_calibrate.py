"""Calibration recovers a device's coefficients from measured runs and cuts the error."""

from __future__ import annotations

import dataclasses

import pytest

from edgelm.arch import ARCH_PRESETS
from edgelm.bench.calibrate import calibrate
from edgelm.bench.record import BenchRecord
from edgelm.errors import ProfileError
from edgelm.manifest import Quant
from edgelm.profiler.devices import get_profile
from edgelm.profiler.energy import estimate_energy
from edgelm.profiler.memory import weights_bytes_for
from tests.bench.records import make_record


def _run(arch_name: str, quant: Quant, true_device, noise: float, run_id: int) -> BenchRecord:  # type: ignore[no-untyped-def]
    arch = ARCH_PRESETS[arch_name]
    wb = weights_bytes_for(arch, quant)
    truth = estimate_energy(arch, true_device, wb, context_tokens=128 + 32, kv_dtype="float16")
    return make_record(arch=arch, weights_bytes=wb, decode_tps=truth.decode_tokens_per_s * (1 + noise),
                       joules=truth.joules_per_token * (1 - noise), id=run_id + 1)


def test_calibration_recovers_power_and_bandwidth() -> None:
    profile = get_profile("pixel-8-pro")
    true_device = dataclasses.replace(profile, active_power_w=2.2, sustained_fraction=0.42)
    records = [_run(a, q, true_device, n, i) for i, (a, q, n) in enumerate(
        [("mobilellm-125m", Quant.INT4, 0.02), ("mobilellm-350m", Quant.INT8, -0.02), ("mobilellm-600m", Quant.INT4, 0.0)])]
    c = calibrate(profile, records)
    assert c.runs == 3
    assert c.calibrated.active_power_w == pytest.approx(2.2, rel=0.1)
    assert c.calibrated.sustained_fraction == pytest.approx(0.42, rel=0.1)
    assert c.error_after < c.error_before / 3
    assert c.speed_error_after < c.speed_error_before
    assert c.calibrated.sources["power.active"].startswith("measured")


def test_calibration_needs_measured_runs() -> None:
    with pytest.raises(ProfileError, match="no stored run with measured energy"):
        calibrate(get_profile("pixel-8-pro"), [make_record(source="estimated")])
