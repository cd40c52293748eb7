"""Parsers on the outputs of the real commands (see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import tomllib

from edgelm.devices.android import (
    DeviceFacts,
    describe_state,
    parse_devices,
    parse_dumpsys_battery,
    parse_getprop,
    parse_meminfo,
    parse_uevent,
    profile_draft,
)
from edgelm.profiler.devices import load_profile

DATA = Path(__file__).parent / "data"


def test_devices_multiple_and_odd_states() -> None:
    devs = parse_devices((DATA / "adb_devices_multi.txt").read_text())
    assert [(d.serial, d.state) for d in devs] == [
        ("1A2B3C4D5E6F", "device"), ("R58N123ABCD", "unauthorized"), ("emulator-5554", "offline"),
        ("0123456789AB", "no permissions")]
    assert devs[0].ready and devs[0].model == "Pixel 8 Pro"
    assert not devs[1].ready and "accept the USB debugging prompt" in describe_state(devs[1].state)
    assert "reconnect" in describe_state(devs[2].state)


def test_no_devices() -> None:
    assert parse_devices((DATA / "adb_devices_none.txt").read_text()) == []


def test_getprop_meminfo_battery_uevent() -> None:
    props = parse_getprop((DATA / "getprop.txt").read_text())
    assert props["ro.product.model"] == "Pixel 8 Pro" and props["ro.soc.model"] == "Tensor G3"
    mem = parse_meminfo((DATA / "meminfo.txt").read_text())
    assert mem["MemTotal"] == 11732888 * 1024
    bat = parse_dumpsys_battery((DATA / "dumpsys_battery.txt").read_text())
    assert bat["level"] == "87" and bat["voltage"] == "4312" and bat["USB powered"] == "true"
    ue = parse_uevent((DATA / "uevent_battery.txt").read_text())
    assert ue["CURRENT_NOW"] == "-412000" and ue["CHARGE_FULL_DESIGN"] == "4950000"


def _facts(uevent: str) -> DeviceFacts:
    return DeviceFacts("1A2B3C4D5E6F", parse_getprop((DATA / "getprop.txt").read_text()),
                       parse_meminfo((DATA / "meminfo.txt").read_text()),
                       parse_dumpsys_battery((DATA / "dumpsys_battery.txt").read_text()),
                       parse_uevent((DATA / uevent).read_text()), [2150000] * 4 + [2600000] * 4 + [2910000])


def test_profile_draft_loads_as_a_profile(tmp_path: Path) -> None:
    f = _facts("uevent_battery.txt")
    assert f.battery_design_mah == 4950 and not f.charging
    draft = profile_draft(f)
    tomllib.loads(draft)
    path = tmp_path / "pixel-8-pro.toml"
    path.write_text(draft)
    p = load_profile(path)
    assert p.dram_bytes == 12e9 and p.battery_mah == 4950 and p.cpu_cores == 9 and p.big_cores == 1
    assert p.max_frequency_hz == 2.91e9
    assert "memory.peak_bandwidth" in p.assumptions() and "battery.capacity" not in p.assumptions()


def test_profile_draft_with_missing_fields(tmp_path: Path) -> None:
    f = _facts("uevent_missing.txt")
    assert f.battery_design_mah is None and f.charging
    path = tmp_path / "x.toml"
    path.write_text(profile_draft(f))
    assert "battery.capacity" in load_profile(path).assumptions()
