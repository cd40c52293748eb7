"""Valid benchmark records for tests: one function, overridable per field."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgelm.arch import ARCH_PRESETS, Architecture
from edgelm.bench.record import BenchDevice, BenchEnergy, BenchModel, BenchRecord, BenchSettings
from edgelm.sampling import SamplingParams


def make_record(*, arch: Architecture | None = None, weights_bytes: int = 60_000_000, decode_tps: float = 100.0,
                joules: float = 0.01, source: str = "measured:battery", device_id: str = "adb:XYZ",
                profile: str | None = "pixel-8-pro", prompt_tokens: int = 128, new_tokens: int = 64,
                **fields: Any) -> BenchRecord:
    arch = arch or ARCH_PRESETS["mobilellm-125m"]
    rec = BenchRecord(
        time_utc="2026-12-01T00:00:00Z",
        model=BenchModel("/m", "m", "0" * 64, "int4", arch.parameter_count(), weights_bytes, "float16", arch),
        device=BenchDevice(device_id, profile, "x86_64", "Linux", "host"),
        settings=BenchSettings(prompt_tokens, new_tokens, 5, 1, None, SamplingParams(temperature=0.0)),
        ttft_ms=20.0, prefill_tokens_per_s=6400.0, decode_tokens_per_s=decode_tps, decode_tokens_per_s_p10=decode_tps,
        decode_tokens_per_s_p90=decode_tps, load_s=0.5, peak_rss_bytes=200_000_000, peak_rss_scope="since load",
        sampling_share=0.01, energy=BenchEnergy(joules, source), versions={"edgelm": "0.1.0"})
    return dataclasses.replace(rec, **fields)
