"""Device profiles: the shipped set, the schema, and clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelm.cli import main
from edgelm.errors import ProfileError
from edgelm.profiler.devices import get_profile, list_profiles, load_profile, profiles_dir


def test_shipped_profiles_load_and_cover_the_range() -> None:
    profiles = {p.id: p for p in list_profiles()}
    assert len(profiles) >= 10
    for pid in ("iphone-15-pro", "pixel-8-pro", "galaxy-s24", "galaxy-a54", "galaxy-a15", "raspberry-pi-5",
                "jetson-orin-nano"):
        assert pid in profiles
    assert {p.os for p in profiles.values()} >= {"ios", "android", "linux"}
    for p in profiles.values():
        assert p.id == Path(p.path).stem
        assert p.dram_type.startswith(("LPDDR4X", "LPDDR5")) or p.kind == "desktop"
        if p.kind == "phone":
            assert p.battery_j is not None and 20e3 < p.battery_j < 100e3


def test_every_number_has_a_source() -> None:
    for p in list_profiles():
        for field in ("memory.dram", "memory.peak_bandwidth", "memory.sustained_fraction", "power.active",
                      "memory.dram_energy_per_bit", "cpu.cores"):
            assert p.sources.get(field), (p.id, field)
        assert all(v.startswith(("http", "assumption", "derived", "measured")) for v in p.sources.values()), p.id


def test_battery_energy_in_kilojoules() -> None:
    p = get_profile("pixel-8-pro")
    assert p.battery_j == pytest.approx(5050 / 1000 * 3.89 * 3600)


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "my-phone.toml"
    f.write_text(text)
    return f


def _valid() -> str:
    return (profiles_dir() / "pixel-8-pro.toml").read_text().replace('id = "pixel-8-pro"', 'id = "my-phone"')


def test_user_profile_by_path(tmp_path: Path) -> None:
    p = get_profile(str(_write(tmp_path, _valid())))
    assert p.id == "my-phone" and p.dram_bytes == 12e9


@pytest.mark.parametrize("edit,field,needle", [
    (lambda t: t.replace('capacity = "5050 mAh"\n', ""), "battery", "capacity"),
    (lambda t: t.replace('capacity = "5050 mAh"', 'capacity = "-5050 mAh"'), "battery.capacity", "must lie in"),
    (lambda t: t.replace('capacity = "5050 mAh"', "capacity = inf"), "battery.capacity", "must lie in"),
    (lambda t: t.replace('dram = "12 GB"', 'dram = "1e30 GB"'), "memory.dram", "must lie in"),
    (lambda t: t.replace('peak_bandwidth = "68.3 GB/s"', "peak_bandwidth = 1e-310"), "memory.peak_bandwidth",
     "must lie in"),
    (lambda t: t.replace('capacity = "5050 mAh"', "capacity = nan"), "battery.capacity", "must lie in"),
    (lambda t: t.replace('dram = "12 GB"', 'dram = "12 GQ"'), "memory.dram", "unknown unit"),
    (lambda t: t.replace('peak_bandwidth = "68.3 GB/s"\n', ""), "memory.peak_bandwidth", "missing"),
    (lambda t: t.replace('"power.active" = ', '"power.unused" = '), "power.active", "no source"),
    (lambda t: t.replace('kind = "phone"', 'kind = "toaster"'), "kind", "must be one of"),
    (lambda t: t.replace("schema_version = 1", "schema_version = 9"), "schema_version", "must be 1"),
    (lambda t: t + "\n[[[ not toml", "", "not valid TOML"),
])
def test_bad_profiles_name_file_and_field(tmp_path: Path, edit, field: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    f = _write(tmp_path, edit(_valid()))
    with pytest.raises(ProfileError) as e:
        load_profile(f)
    msg = str(e.value)
    assert str(f) in msg and needle in msg
    if field:
        assert f"field {field}" in msg


def test_unknown_device_id() -> None:
    with pytest.raises(ProfileError, match="unknown device 'nokia-3310'.*pixel-8-pro"):
        get_profile("nokia-3310")


def test_devices_cli_lists_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--profiles"]) == 0
    out = capsys.readouterr().out
    assert "iphone-15-pro" in out and "raspberry-pi-5" in out


def test_profile_cli_bad_device_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "smollm2-135m", "--device", "nokia-3310"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown device" in err[0]
