"""edgelm plan: the numbers, the bad-input errors, the sweep figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgelm.cli import main
from edgelm.plan.planner import PlanError, parse_params, plan, spec_for_params


@pytest.mark.parametrize("text,value", [("350M", 350e6), ("1.5B", 1.5e9), ("7b", 7e9), ("125m", 125e6)])
def test_parse_params(text: str, value: float) -> None:
    assert parse_params(text) == value


@pytest.mark.parametrize("target", [125e6, 350e6, 1e9, 3e9, 7e9])
def test_spec_for_params_hits_the_count(target: float) -> None:
    assert spec_for_params(target, "int4").arch.parameter_count() == pytest.approx(target, rel=0.08)


def test_battery_arithmetic() -> None:
    p = plan("pixel-8-pro", params="350M", quant="int4", tokens_per_day=10000)
    bj = p.report.device.battery_j
    assert bj is not None
    assert p.battery_percent_per_day == pytest.approx(100 * 10000 * p.joules_per_token / bj)
    assert p.joules_source == "estimated"
    assert p.limiting_factor == "none"


def test_samples_per_request_are_priced_in_parallel(capsys: pytest.CaptureFixture[str]) -> None:
    """N samples a reply: N times the tokens, each at the N-sequence J/token (weights read
    once a step for all N, so cheaper than a lone token, never cheaper than weights shared
    by all N for free), N KV caches in DRAM; one sample is today's plan exactly."""
    one = plan("pixel-8-pro", params="350M", quant="int4", tokens_per_day=10000)
    same = plan("pixel-8-pro", params="350M", quant="int4", tokens_per_day=10000, samples_per_request=1)
    assert same.to_dict() == one.to_dict()
    four = plan("pixel-8-pro", params="350M", quant="int4", tokens_per_day=10000, samples_per_request=4)
    assert four.generated_tokens_per_day == 40000 and four.joules_source == "estimated, 4 samples in parallel"
    assert one.joules_per_token / 4 < four.joules_per_token < one.joules_per_token
    assert four.decode_tokens_per_s > one.decode_tokens_per_s
    bj = four.report.device.battery_j
    assert bj is not None and four.battery_percent_per_day == pytest.approx(100 * 40000 * four.joules_per_token / bj)
    a, m1, m4 = one.report.model.arch, one.report.memory, four.report.memory
    assert m4.kv_cache_bytes == pytest.approx(4 * m1.kv_cache_bytes)
    assert m4.peak_bytes - m1.peak_bytes == pytest.approx(3 * m1.kv_cache_bytes, rel=1e-6) and a.num_layers > 0
    with pytest.raises(PlanError, match="samples per request"):
        plan("pixel-8-pro", params="350M", tokens_per_day=1, samples_per_request=0)
    assert main(["plan", "--device", "pixel-8-pro", "--params", "350M", "--tokens-per-day", "10000",
                 "--samples-per-request", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 a request, decoded in parallel" in out and "40,000 tokens generated a day" in out
    with pytest.raises(SystemExit) as stop:
        main(["plan", "--device", "pixel-8-pro", "--params", "350M", "--tokens-per-day", "1",
              "--samples-per-request", "65"])
    assert stop.value.code == 2 and "not in [1, 64]" in capsys.readouterr().err


def test_7b_does_not_fit_a_phone_budget() -> None:
    p = plan("pixel-8-pro", params="7B", quant="int4", tokens_per_day=1000)
    assert not p.report.fits and p.limiting_factor == "DRAM"


def test_battery_is_the_limit_for_heavy_use() -> None:
    p = plan("pixel-8-pro", params="125M", quant="int4", tokens_per_day=5e6, battery_target_percent=10)
    assert p.report.fits and p.limiting_factor == "battery"


@pytest.mark.parametrize("argv,needle", [
    (["--device", "nokia-3310", "--params", "350M"], "unknown device"),
    (["--device", "pixel-8-pro", "--params", "350M", "--tokens-per-day", "-5"], "tokens per day"),
    (["--device", "pixel-8-pro", "--params", "350M", "--tokens-per-day", "1e12"], "absurd"),
    (["--device", "pixel-8-pro", "--params", "lots"], "parameter count"),
    (["--device", "pixel-8-pro", "--model", "/nonexistent"], "not a model folder"),
])
def test_bad_input_is_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    if "--tokens-per-day" not in argv:
        argv = [*argv, "--tokens-per-day", "1000"]
    assert main(["plan", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_sweep_writes_png_and_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--device", "iphone-15-pro", "--tokens-per-day", "20000", "--sweep", "--largest",
                 "--out", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    files = [Path(f) for f in out["figures"]]
    assert {f.suffix for f in files} == {".png", ".svg"} and all(f.stat().st_size > 1000 for f in files)
    assert out["largest"]["fits_dram"] is True
    sizes = [r["parameters"] for r in out["sweep"]["int4"]]
    assert sizes == sorted(sizes)
    # Bigger models cost more battery per token, at every quantization.
    for rs in out["sweep"].values():
        hours = [r["hours_at_10_tokens_per_s"] for r in rs]
        assert hours == sorted(hours, reverse=True)
    # The named shapes of 2026's small models, beside the sweep.
    named = {r["model"]: r for r in out["presets"]["int4"]}
    assert {"qwen3-0.6b", "llama3.2-1b", "smollm2-360m", "smollm2-135m"} <= set(named)
    assert named["llama3.2-1b"]["parameters"] == pytest.approx(1.236e9, rel=0.01)
    assert main(["plan", "--device", "iphone-15-pro", "--tokens-per-day", "20000", "--sweep",
                 "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "qwen3-0.6b" in text and "llama3.2-1b" in text


def test_plan_rejects_missing_model_choice() -> None:
    with pytest.raises(PlanError, match="exactly one"):
        plan("pixel-8-pro", tokens_per_day=10)


def test_qwen3_preset_has_the_published_shape() -> None:
    """Qwen3-0.6B's shape plans before any weights exist: 0.6B parameters (0.44B without
    the 151,936 x 1024 table), its per-head q/k norms counted, and a float16 KV cache of
    28 layers x 8 heads x 128 per token."""
    p = plan("pixel-8-pro", model="qwen3-0.6b", tokens_per_day=1000)
    a = p.report.model.arch
    assert a.qk_norm and a.q_size == 2048 != a.hidden_size
    assert a.parameter_count() == pytest.approx(596e6, rel=0.01)
    assert a.parameter_count() - 151936 * 1024 == pytest.approx(440e6, rel=0.01)
    assert p.report.memory.kv_cache_bytes == 2 * 28 * 8 * 128 * 2048 * 2


@pytest.mark.parametrize("name,params,window_layers", [("gemma3-270m", 268e6, 15), ("gemma3-1b", 1000e6, 22)])
def test_gemma3_presets_have_the_published_shapes(name: str, params: float, window_layers: int) -> None:
    a = plan("pixel-8-pro", model=name, tokens_per_day=1000).report.model.arch
    assert a.parameter_count() == pytest.approx(params, rel=0.01)
    assert a.qk_norm and a.post_norms and a.head_dim == 256 and a.num_kv_heads == 1
    assert sum(a.window_of(i) == 512 for i in range(a.num_layers)) == window_layers
