"""The energy model reproduces the orders of magnitude the MobileLLM paper relies on."""

from __future__ import annotations

import json

import pytest

from edgelm.arch import Architecture, Family
from edgelm.cli import main
from edgelm.manifest import Quant
from edgelm.profiler.devices import get_profile
from edgelm.profiler.energy import estimate_energy
from edgelm.profiler.memory import weights_bytes_for

LLAMA2_7B = Architecture(Family.LLAMA, 32, 4096, 32, 32, 128, 11008, 32000, 4096, tie_word_embeddings=False)
MOBILELLM_350M = Architecture(Family.LLAMA, 32, 960, 15, 5, 64, 2560, 32000, 2048)
FLAGSHIPS = ["iphone-15-pro", "pixel-8-pro", "galaxy-s24"]
BATTERY_J = 50e3  # "a ~50 kJ phone battery" (MobileLLM, section 1)


def _joules(arch: Architecture, device: str, quant: Quant) -> float:
    return estimate_energy(arch, get_profile(device), weights_bytes_for(arch, quant)).joules_per_token


@pytest.mark.parametrize("device", FLAGSHIPS)
@pytest.mark.parametrize("quant", [Quant.INT8, Quant.INT4])
def test_about_a_tenth_of_a_joule_per_token_per_billion_parameters(device: str, quant: Quant) -> None:
    per_billion = _joules(LLAMA2_7B, device, quant) / (LLAMA2_7B.parameter_count() / 1e9)
    assert 0.05 <= per_billion <= 0.2, per_billion


@pytest.mark.parametrize("device", FLAGSHIPS)
def test_7b_at_10_tokens_per_s_drains_50kj_in_under_two_hours(device: str) -> None:
    hours = BATTERY_J / (_joules(LLAMA2_7B, device, Quant.INT8) * 10) / 3600
    assert hours < 2.0, hours


@pytest.mark.parametrize("device", FLAGSHIPS)
def test_350m_lasts_a_day_of_the_same_use(device: str) -> None:
    """Same use: continuous generation at 10 tokens/s on the same 50 kJ; "a day" is read
    as a waking day of 16 hours."""
    hours = BATTERY_J / (_joules(MOBILELLM_350M, device, Quant.INT8) * 10) / 3600
    assert hours >= 16.0, hours
    assert hours > 8 * BATTERY_J / (_joules(LLAMA2_7B, device, Quant.INT8) * 10) / 3600


def test_lower_bandwidth_means_slower_and_costlier_tokens() -> None:
    fast = estimate_energy(MOBILELLM_350M, get_profile("pixel-8-pro"), 2e8)
    slow = estimate_energy(MOBILELLM_350M, get_profile("galaxy-a15"), 2e8)
    assert slow.decode_tokens_per_s < fast.decode_tokens_per_s
    assert slow.bound == fast.bound == "memory"


def test_profile_json_has_stable_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "mobilellm-350m", "--device", "pixel-8-pro", "--quant", "int4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    for a, b in (("dram", "peak_bytes"), ("dram", "fits"), ("speed", "decode_tokens_per_s"),
                 ("energy", "joules_per_token")):
        assert b in d[a]
    assert d["energy"]["source"] == "estimated"
    assert isinstance(d["dram"]["fits"], bool)
