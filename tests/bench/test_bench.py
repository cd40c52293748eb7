"""edgelm bench on a tiny model folder: figures, the store, history and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgelm.cli import main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_int4(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("bench") / "int4"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


def test_bench_json_history_compare(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "results.jsonl")
    args = ["bench", str(tiny_int4), "--runs", "2", "--new-tokens", "8", "--prompt-tokens", "16", "--threads", "1",
            "--store", store, "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert 0 < r["decode_tokens_per_s_p10"] <= r["decode_tokens_per_s"] <= r["decode_tokens_per_s_p90"]
    assert r["prefill_tokens_per_s"] == pytest.approx(16 / (r["ttft_ms"] / 1e3), rel=1e-9)
    assert 0 < r["sampling_share"] < 1 and 0 < r["load_s"] < 60
    assert 20e6 < r["peak_rss_bytes"] < 24e9  # bytes (a kB/byte mix-up would fall outside)
    assert r["energy"]["source"] == "estimated" and r["settings"]["runs"] == 2
    assert main(args) == 0
    capsys.readouterr()
    assert main(["bench", "--history", "--store", store]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["bench", "--compare", "1", "2", "--store", store]) == 0
    assert "decode tokens/s" in capsys.readouterr().out


def test_bench_errors_are_one_line(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path)]) == 2  # no manifest
    assert "edgelm.json" in capsys.readouterr().err
    assert main(["bench", str(tiny_int4), "--device", "phone"]) == 2
    assert "adb:SERIAL" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("garbage\n")
    assert main(["bench", "--history", "--store", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt at line 1" in err[0]
    assert bad.read_text() == "garbage\n"


def test_bench_estimate_is_the_profile_model_at_the_measured_speed(tiny_int4: Path) -> None:
    """``edgelm bench`` without a meter estimates J/token with ``edgelm profile``'s energy
    model (SoC power x time + DRAM + arithmetic), the modelled time replaced by the measured
    one: the same figure, not a second formula."""
    from edgelm.bench.runner import bench
    from edgelm.profiler.devices import get_profile
    from edgelm.profiler.energy import bench_context
    from edgelm.profiler.report import profile_model

    r = bench(tiny_int4, prompt_tokens=8, new_tokens=8, runs=3, warmup=0, threads=1, meter=None,
              estimate_device="pixel-8-pro")
    dev = get_profile("pixel-8-pro")
    model = profile_model(str(tiny_int4), dev, context=bench_context(8, 8)).energy
    seconds = 1 / r.decode_tokens_per_s  # three runs: the median time is the median speed's inverse
    want = dev.active_power_w * seconds + model.dram_joules_per_token + model.compute_joules_per_token
    assert model.compute_joules_per_token > 0
    assert r.energy.joules_per_token == pytest.approx(want, rel=1e-9)
    assert r.energy.estimate_device == "pixel-8-pro" and not r.energy.measured


def test_bench_lookup_reports_tokens_per_pass(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    """--lookup decodes the same tokens as the plain loop, counts its passes over the weights
    and stores them; a plain run stores 1 token per pass."""
    import edgelm
    from edgelm.bench.runner import timed_generation
    from edgelm.sampling import SamplingParams

    model = edgelm.load(tiny_int4, threads=1, context=200)
    prompt = model.encode("abc abc abc abc abc abc")
    greedy = SamplingParams(temperature=0.0)
    plain = timed_generation(model, prompt, 120, greedy)
    looked = timed_generation(model, prompt, 120, greedy, lookup=True)
    assert looked["tokens"] == plain["tokens"] and len(plain["tokens"]) == 120
    passes = model.lookup_stats.weight_passes
    assert looked["tokens_per_pass"] == pytest.approx(119 / passes) and plain["tokens_per_pass"] == 1.0
    store = str(tmp_path / "r.jsonl")
    assert main(["bench", str(tiny_int4), "--runs", "1", "--new-tokens", "32", "--prompt-tokens", "16",
                 "--threads", "1", "--lookup", "--store", store, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["settings"]["lookup"] is True and r["tokens_per_pass"] >= 1.0
    assert main(["bench", "--history", "--store", store]) == 0


def test_bench_sequences_reports_the_aggregate(tiny_int4: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--sequences N decodes N samples in lockstep: each sample is the lone run with its seed,
    the record's tokens/s is their aggregate and its J per sequence the aggregate J/token
    times the new tokens; the estimate counts the weights once per pass for all N."""
    import edgelm
    from edgelm.bench.runner import timed_generation, timed_parallel
    from edgelm.profiler.devices import get_profile
    from edgelm.profiler.energy import estimate_energy
    from edgelm.sampling import SamplingParams

    model = edgelm.load(tiny_int4, threads=1, context=64, sequences=3)
    prompt = model.encode("abc abc")
    params = SamplingParams(temperature=3.0, repetition_penalty=1.3, seed=7)
    par = timed_parallel(model, prompt, 20, params, 3)
    assert len(par["tokens"]) == 3 and all(len(t) == 20 for t in par["tokens"])
    for i, toks in enumerate(par["tokens"]):
        assert toks == timed_generation(model, prompt, 20, SamplingParams(temperature=3.0, repetition_penalty=1.3,
                                                                          seed=7 + i))["tokens"]
    store = str(tmp_path / "r.jsonl")
    assert main(["bench", str(tiny_int4), "--runs", "1", "--new-tokens", "16", "--prompt-tokens", "8",
                 "--threads", "1", "--sequences", "3", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "3 sequences in lockstep" in out and "J per sequence" in out
    assert main(["bench", "--history", "--store", store, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)[0]
    assert r["settings"]["sequences"] == 3 and r["settings"]["sampling"]["temperature"] == 0.8
    assert main(["bench", str(tiny_int4), "--sequences", "2", "--lookup", "--no-store"]) == 2
    assert "cannot be combined" in capsys.readouterr().err
    a, dev = model.manifest.architecture, get_profile("pixel-8-pro")
    one = estimate_energy(a, dev, 1e8, context_tokens=100, kv_dtype="float16", seconds_per_token=0.01)
    four = estimate_energy(a, dev, 1e8, context_tokens=100, kv_dtype="float16", seconds_per_token=0.01, sequences=4)
    kv = a.kv_cache_bytes(100, "float16")
    assert one.bytes_per_token == pytest.approx(1e8 + kv) and four.bytes_per_token == pytest.approx(1e8 / 4 + kv)
