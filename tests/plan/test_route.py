"""edgelm plan --route: the planner's properties, the sourced radio and cloud profiles,
the CLI's errors and the figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelm.errors import ProfileError
from edgelm.plan.planner import PlanError, plan
from edgelm.plan.route import (
    RequestClass,
    _local_energy,
    _send_energy,
    get_cloud,
    get_radio,
    load_radio,
    read_workload,
    route,
    sweep_shares,
)
from edgelm.profiler.devices import profiles_dir

ROOT = Path(__file__).resolve().parents[2]
RADIOS = ["wifi", "lte", "5g-nr"]


@pytest.fixture(scope="module")
def smollm2() -> object:
    return route("pixel-8-pro", [RequestClass("chat", 400, 150, 200, 0.1)], model="smollm2-135m")


def test_every_radio_and_cloud_number_is_sourced() -> None:
    for path in sorted((profiles_dir() / "radios").glob("*.toml")) + sorted((profiles_dir() / "cloud").glob("*.toml")):
        prof = load_radio(path) if path.parent.name == "radios" else get_cloud(str(path))
        assert prof.sources and all(isinstance(v, str) and v.strip() for v in prof.sources.values())
    lte = get_radio("lte")
    assert "MobiSys 2012" in lte.sources["tail.time"] and lte.tail_s == pytest.approx(11.576)
    assert all(v.startswith("assumption") for v in get_radio("5g-nr").sources.values())


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace('"tail.power" =', '"tail.powr" ='), "field tail.power: has no source"),
    (lambda t: t.replace('time = "11.576 s"', 'time = "11.576 parsecs"'), "field tail.time: unknown unit"),
    (lambda t: t.replace('power = "1060.0 mW"', 'power = "1e30 W"'), "field tail.power: must lie in"),
    (lambda t: t.replace("schema_version = 1", "schema_version = 7"), "schema_version"),
    (lambda t: t + "\n[[[", "not valid TOML"),
])
def test_a_bad_radio_profile_is_one_line(tmp_path: Path, edit, needle: str) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "radio.toml"
    bad.write_text(edit((profiles_dir() / "radios" / "lte.toml").read_text()))
    with pytest.raises(ProfileError) as e:
        load_radio(bad)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_zero_routed_share_reproduces_plan_exactly() -> None:
    res = route("pixel-8-pro", [RequestClass("chat", 400, 150, 200, 0.0)], model="smollm2-135m")
    today = plan("pixel-8-pro", model="smollm2-135m", tokens_per_day=200 * 150)
    assert res.all_local.joules_generation == today.generated_tokens_per_day * today.joules_per_token
    assert res.routed == res.all_local and res.routed.joules_radio == 0 and res.routed.usd == 0
    assert res.local.joules_per_token == today.joules_per_token and res.local.report.fits == today.report.fits
    assert res.local.battery_percent_per_day == today.battery_percent_per_day


classes = st.builds(RequestClass, st.just("r"), st.integers(0, 4000), st.integers(1, 4000),
                    st.floats(0, 5000), st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(classes, min_size=1, max_size=4), st.sampled_from(RADIOS), st.floats(0, 1), st.floats(0, 1))
def test_more_routed_share_never_lowers_cloud_cost(workload: list[RequestClass], radio: str, a: float,
                                                   b: float) -> None:
    res = route("pixel-8-pro", workload, radio=radio, params="1B")
    lo, hi = sweep_shares(res, res.radio, sorted([a, b]))
    assert hi.usd >= lo.usd and hi.joules_radio >= lo.joules_radio and hi.cloud_requests >= lo.cloud_requests


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 20000), st.sampled_from(RADIOS), st.sampled_from(["135M", "1B", "3B"]))
def test_the_cheaper_side_of_the_break_even_is_cheaper(tokens_in: int, tokens_out: int, radio: str,
                                                       params: str) -> None:
    res = route("pixel-8-pro", [RequestClass("r", tokens_in, tokens_out, 100, 0.5)], radio=radio, params=params)
    rule, n = res.break_even(tokens_in)
    here = _local_energy(res.local, tokens_in, tokens_out)
    away = _send_energy(res.radio, res.cloud, tokens_in, tokens_out)
    if rule == "send" or (rule == "send_above" and tokens_out > n) or (rule == "send_below" and tokens_out < n):
        assert away <= here * (1 + 1e-9)
    elif rule == "local" or (rule == "send_above" and tokens_out < n) or (rule == "send_below" and tokens_out > n):
        assert here <= away * (1 + 1e-9)


def test_short_requests_stay_and_long_ones_go_past_the_break_even() -> None:
    """The radio's fixed cost (promotion, tail) makes a short request cheaper here; a
    1B model's J/token is above the radio's cost per streamed token, so past the
    break-even a longer request is cheaper to send."""
    big = route("pixel-8-pro", [RequestClass("r", 100, 150, 100, 0.5)], params="1B")
    rule, n = big.break_even(100)
    assert rule == "send_above" and n is not None
    below, above = int(n * 0.5), int(n * 2) + 1
    assert _local_energy(big.local, 100, below) < _send_energy(big.radio, big.cloud, 100, below)
    assert _send_energy(big.radio, big.cloud, 100, above) < _local_energy(big.local, 100, above)


def test_the_walkthrough_numbers_hang_together(smollm2) -> None:  # type: ignore[no-untyped-def]
    r = smollm2
    assert r.all_local.battery_percent() < r.routed.battery_percent() < r.all_cloud.battery_percent()
    assert r.routed.usd == pytest.approx(0.1 * r.all_cloud.usd)
    assert r.routed.cloud_requests == pytest.approx(20)
    # a request over LTE: the promotion, the 11.6 s tail and the wait at tail power
    lte = r.radio
    per = _send_energy(lte, r.cloud, 400, 150)
    assert per > lte.tail_w * lte.tail_s + lte.promotion_w * lte.promotion_s
    assert r.all_cloud.joules_radio == pytest.approx(200 * per)


def test_samples_per_request_price_the_parallel_cost() -> None:
    one = route("pixel-8-pro", [RequestClass("r", 400, 150, 200, 0.0)], params="350M")
    four = route("pixel-8-pro", [RequestClass("r", 400, 150, 200, 0.0)], params="350M", samples_per_request=4)
    assert "4 samples in parallel" in four.local.joules_source
    assert four.all_local.joules_generation == pytest.approx(
        4 * 200 * 150 * four.local.joules_per_token)
    assert four.all_local.joules_generation > one.all_local.joules_generation


def test_workload_files(tmp_path: Path) -> None:
    f = tmp_path / "w.toml"
    f.write_text('[[request]]\nname = "summary"\ntokens_in = 800\ntokens_out = 80\nper_day = 150\n'
                 'cloud_share = 0.0\n[[request]]\nname = "hard"\ntokens_in = 300\ntokens_out = 400\nper_day = 20\n'
                 'cloud_share = 1.0\n')
    wl = read_workload(f)
    assert [c.name for c in wl] == ["summary", "hard"]
    f.write_text('[[request]]\ntokens_in = 800\ntokens_out = 80\nper_day = 150\ncloud_share = 2\n')
    with pytest.raises(PlanError, match="cloud_share must be in"):
        read_workload(f)
    f.write_text('[[request]]\ntokens_in = 800\ntokens_out = 80\nper_day = 150\ncolud_share = 0.5\n')
    with pytest.raises(PlanError, match="unknown field 'colud_share'"):
        read_workload(f)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgelm.cli", "plan", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


@pytest.mark.parametrize("flags, needle", [
    (["--route", "--requests-per-day", "200", "--cloud-share", "1.5"], "cloud_share must be in"),
    (["--route"], "one of --workload FILE or --requests-per-day"),
    (["--route", "--requests-per-day", "200", "--radio", "carrier-pigeon"], "unknown radio 'carrier-pigeon'"),
    (["--route", "--requests-per-day", "200", "--tokens-per-day", "5"], "not --tokens-per-day"),
    (["--requests-per-day", "5"], "plan needs --tokens-per-day"),
])
def test_route_flag_errors_are_one_line(flags: list[str], needle: str) -> None:
    proc = _cli("--device", "pixel-8-pro", "--preset", "smollm2-135m", *flags)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_route_cli_json_and_figure(tmp_path: Path) -> None:
    stem = tmp_path / "figs" / "route"
    proc = _cli("--device", "pixel-8-pro", "--preset", "smollm2-135m", "--route", "--requests-per-day", "200",
                "--cloud-share", "0.1", "--plot", str(stem), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["routed"]["cloud_requests_per_day"] == pytest.approx(20)
    assert set(out["figures"]) == {str(stem.with_suffix(".png")), str(stem.with_suffix(".svg"))}
    png = stem.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert not list(stem.parent.glob(".*.tmp"))  # written through temporary files, none left
