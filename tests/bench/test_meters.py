"""Each energy meter on a file tree shaped like the real one (no counter is readable on
the development machines)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edgelm.devices.meters import PowerSupplyMeter, RaplMeter, find_meter


def _rapl_tree(root: Path, pkg_uj: int, dram_uj: int, max_uj: int = 262143328850) -> Path:
    cap = root / "class" / "powercap"
    for path, name, value in ((cap / "intel-rapl:0", "package-0", pkg_uj),
                              (cap / "intel-rapl:0:0", "core", 5),
                              (cap / "intel-rapl:0:1", "dram", dram_uj)):
        path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{value}\n")
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return cap


def _set(cap: Path, domain: str, value: int) -> None:
    (cap / domain / "energy_uj").write_text(f"{value}\n")


def test_rapl_sums_package_and_dram(tmp_path: Path) -> None:
    cap = _rapl_tree(tmp_path, 1_000_000, 500_000)
    m = RaplMeter(cap)
    assert m.available()
    assert {d.name for d in m.domains()} == {"intel-rapl:0", "intel-rapl:0:1"}  # core is inside package
    m.start()
    _set(cap, "intel-rapl:0", 3_500_000)
    _set(cap, "intel-rapl:0:1", 1_000_000)
    r = m.stop()
    assert r.energy_j == pytest.approx(2.5 + 0.5)
    assert "package-0" in r.detail and "dram" in r.detail


def test_rapl_counter_wraparound(tmp_path: Path) -> None:
    cap = _rapl_tree(tmp_path, 999_000_000, 0, max_uj=1_000_000_000)
    m = RaplMeter(cap)
    m.start()
    _set(cap, "intel-rapl:0", 4_000_000)  # wrapped: 1,000 J range, +5 J
    r = m.stop()
    assert r.energy_j == pytest.approx(5.0)


def test_rapl_missing_is_unavailable(tmp_path: Path) -> None:
    assert not RaplMeter(tmp_path / "nothing").available()
    assert find_meter(tmp_path) is None


def _battery(root: Path, current_ua: int, voltage_uv: int, status: str = "Discharging") -> Path:
    d = root / "class" / "power_supply" / "battery"
    d.mkdir(parents=True, exist_ok=True)
    (d / "type").write_text("Battery\n")
    (d / "status").write_text(status + "\n")
    (d / "current_now").write_text(f"{current_ua}\n")
    (d / "voltage_now").write_text(f"{voltage_uv}\n")
    return d


@pytest.mark.parametrize("sign", [1, -1])
def test_battery_gauge_integrates_power(tmp_path: Path, sign: int) -> None:
    _battery(tmp_path, sign * 500_000, 4_000_000)  # 0.5 A x 4 V = 2 W
    m = PowerSupplyMeter(root=tmp_path / "class" / "power_supply", rate_hz=200)
    assert m.available()
    threads = threading.active_count()
    m.start()
    time.sleep(0.3)
    r = m.stop()
    assert threading.active_count() == threads  # the sampling thread ended with stop()
    assert r.samples >= 10 and r.rate_hz == 200 and not r.charging
    assert r.power_w == pytest.approx(2.0, rel=1e-6)
    assert ("negative" in r.detail) == (sign < 0)
    assert "CHARGING" not in r.detail


def test_battery_gauge_follows_a_changing_load(tmp_path: Path) -> None:
    d = _battery(tmp_path, 250_000, 4_000_000)  # 1 W, then 3 W
    m = PowerSupplyMeter(root=tmp_path / "class" / "power_supply", rate_hz=500)
    m.start()
    time.sleep(0.2)
    (d / "current_now").write_text("750000\n")
    time.sleep(0.2)
    r = m.stop()
    assert 1.5 < r.power_w < 2.5


def test_battery_gauge_flags_charging(tmp_path: Path) -> None:
    _battery(tmp_path, 100_000, 4_000_000, status="Charging")
    m = PowerSupplyMeter(root=tmp_path / "class" / "power_supply", rate_hz=100)
    m.start()
    time.sleep(0.05)
    r = m.stop()
    assert "CHARGING" in r.detail and r.charging


def test_find_meter_prefers_rapl(tmp_path: Path) -> None:
    _rapl_tree(tmp_path, 1, 1)
    _battery(tmp_path, 1, 1)
    m = find_meter(tmp_path)
    assert m is not None and m.name == "rapl"
    (tmp_path / "class" / "powercap").rename(tmp_path / "gone")
    m = find_meter(tmp_path)
    assert m is not None and m.name == "battery"


def test_nvml_meter_reads_the_total_energy_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML through a stand-in for pynvml with the calls the meter makes (millijoules)."""
    import types

    from edgelm.devices.meters import NvmlMeter

    counters = {0: 1_000_000, 1: 50_000}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 2, nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetTotalEnergyConsumption=lambda h: counters[h])
    monkeypatch.setitem(__import__("sys").modules, "pynvml", fake)
    m = NvmlMeter()
    assert m.available()
    m.start()
    counters[0] += 3_000
    counters[1] += 500
    r = m.stop()
    assert r.energy_j == pytest.approx(3.5)


def test_nvml_unavailable_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelm.devices.meters import NvmlMeter

    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    assert not NvmlMeter().available()
