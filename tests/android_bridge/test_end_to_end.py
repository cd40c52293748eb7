"""The whole push / run / pull / measure flow against a local transport: the same
on-device command (edgelm bench) runs on this machine, and the battery sampler reads a
file tree shaped like /sys/class/power_supply."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from edgelm.bench import ResultsStore
from edgelm.bench.remote import remote_bench
from edgelm.devices.android import HASHES_FILE, AndroidBatteryMeter, push_folder, read_facts
from edgelm.devices.meters import Meter
from edgelm.devices.transport import LocalTransport

pytest.importorskip("torch")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def tiny_folder(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("phone") / "tiny-int8"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int8", verify=False, progress=False))
    return out


def _phone(root: Path, current_ua: int = -400_000, status: str = "Discharging") -> LocalTransport:
    bat = root / "sys/class/power_supply/battery"
    bat.mkdir(parents=True)
    (bat / "current_now").write_text(f"{current_ua}\n")
    (bat / "voltage_now").write_text("4000000\n")
    (bat / "status").write_text(status + "\n")
    (bat / "uevent").write_text((DATA / "uevent_battery.txt").read_text())
    (root / "proc").mkdir()
    (root / "proc/meminfo").write_text((DATA / "meminfo.txt").read_text())
    for i, khz in enumerate([1800000, 1800000, 2800000]):
        d = root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
    # The phone's own tools, printing what the real ones print.
    tools = root / "system/bin"
    tools.mkdir(parents=True)
    for name, data in (("getprop", "getprop.txt"), ("dumpsys", "dumpsys_battery.txt")):
        tool = tools / name
        tool.write_text(f"#!{sys.executable}\nprint(open({str(DATA / data)!r}).read(), end='')\n")
        tool.chmod(0o755)
    return LocalTransport(root, env={"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"})


def test_push_skips_unchanged_files(tiny_folder: Path, tmp_path: Path) -> None:
    t = _phone(tmp_path)
    first = push_folder(t, tiny_folder, "/data/local/tmp/edgelm/m")
    assert "model.onnx.data" in first and "edgelm.json" in first
    assert json.loads(t.read_text(f"/data/local/tmp/edgelm/m/{HASHES_FILE}") or "{}")
    assert push_folder(t, tiny_folder, "/data/local/tmp/edgelm/m") == []


def test_battery_meter_over_the_transport(tmp_path: Path) -> None:
    t = _phone(tmp_path)
    s = AndroidBatteryMeter(t, rate_hz=50)
    assert isinstance(s, Meter) and s.available()
    r = s.measure(0.3)
    assert r.samples >= 5 and r.power_w == pytest.approx(1.6, rel=1e-6)  # 0.4 A x 4.0 V
    assert r.sign_convention == "negative current = discharge" and not r.charging


def test_read_facts_over_the_transport(tmp_path: Path) -> None:
    t = _phone(tmp_path)
    f = read_facts(t, "local")
    assert f.ram_bytes == 11732888 * 1024 and f.cpu_max_khz == [1800000, 1800000, 2800000]
    assert f.battery_design_mah == 4950


def test_remote_bench_end_to_end(tiny_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "phone"
    t = _phone(root)
    # The load rises while the benchmark runs: 1.6 W idle, 4.0 W busy.
    stop = threading.Event()

    def load() -> None:
        time.sleep(0.5)
        (root / "sys/class/power_supply/battery/current_now").write_text("-1000000\n")
        stop.wait()

    th = threading.Thread(target=load)
    th.start()
    try:
        record = remote_bench(t, "local-phone", tiny_folder, python=sys.executable, prompt_tokens=16, new_tokens=8,
                              runs=2, warmup=1, threads=1, sample_rate_hz=50, idle_s=0.3, as_profile="pixel-8-pro")
    finally:
        stop.set()
        th.join()
    e = record.energy
    assert record.device.id == "adb:local-phone" and e.source == "measured:battery"
    assert e.idle_power_w == pytest.approx(1.6, rel=1e-6)
    assert e.samples is not None and e.samples > 5 and not e.charging
    assert e.active_power_w is not None and e.duration_s is not None and 1.6 < e.active_power_w <= 4.0 + 1e-9
    # Net of idle, per token of all (warm-up and counted) runs: idle subtracted once.
    assert e.joules_per_token == pytest.approx((e.active_power_w - 1.6) * e.duration_s / ((2 + 1) * 8), rel=1e-6)
    assert record.decode_tokens_per_s > 0 and record.push and record.push["files_pushed"]
    store = ResultsStore(tmp_path / "results.jsonl")
    assert store.append(record).id == 1
    # The measured run calibrates the profile it was taken as.
    from edgelm.bench.calibrate import calibrate
    from edgelm.profiler.devices import get_profile

    c = calibrate(get_profile("pixel-8-pro"), store.read())
    assert c.runs == 1 and c.calibrated.active_power_w > 0


def test_charging_phone_is_flagged(tiny_folder: Path, tmp_path: Path) -> None:
    t = _phone(tmp_path / "phone", current_ua=300_000, status="Charging")
    record = remote_bench(t, "p", tiny_folder, python=sys.executable, prompt_tokens=8, new_tokens=4, runs=1,
                          warmup=0, threads=1, sample_rate_hz=50, idle_s=0.1)
    assert record.energy.charging and "meaningless" in (record.energy.warning or "")
