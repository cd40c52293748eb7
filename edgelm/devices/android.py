"""Android phones over adb: which are attached (``adb devices -l``), their facts (getprop,
/proc/meminfo, dumpsys battery, power_supply uevent, CPU frequencies) as a draft device
profile, their battery gauge as an energy :class:`~edgelm.devices.meters.Meter`, and
pushing a model folder to them. Everything reaches the phone through a
:class:`~edgelm.devices.transport.Transport`, so the tests run it against this machine.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .._io import sha256_file
from ..errors import DeviceError
from .meters import FuelGaugeMeter
from .transport import Transport, translate_errors

__all__ = ["AdbDevice", "parse_devices", "discover", "describe_state", "AndroidBatteryMeter", "push_folder",
           "HASHES_FILE", "SUPPLY", "DeviceFacts", "parse_getprop", "parse_meminfo", "parse_dumpsys_battery",
           "parse_uevent", "read_facts", "profile_draft"]

SUPPLY = "/sys/class/power_supply/battery"
HASHES_FILE = ".edgelm-sha256.json"

_STATES = {
    "device": "ready",
    "unauthorized": "unauthorized: accept the USB debugging prompt on the phone",
    "offline": "offline: reconnect the cable or restart adb (adb kill-server)",
    "no permissions": "no permissions: add a udev rule for the phone (see the adb documentation)",
    "recovery": "in recovery mode",
    "sideload": "in sideload mode",
    "bootloader": "in the bootloader",
}


@dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str
    props: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "device"

    @property
    def model(self) -> str:
        return self.props.get("model", "?").replace("_", " ")


def describe_state(state: str) -> str:
    return _STATES.get(state, state)


def parse_devices(text: str) -> list[AdbDevice]:
    """Parse ``adb devices -l`` output (daemon start-up chatter and blank lines ignored)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*", "adb server", "adb:")):
            continue
        serial, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
        rest = rest.strip()
        if rest.startswith("no permissions"):
            state, tail = "no permissions", rest[len("no permissions"):]
        else:
            state, _, tail = rest.partition(" ")
        props = {}
        for token in tail.split():
            key, sep, value = token.partition(":")
            if sep:
                props[key] = value
        out.append(AdbDevice(serial.strip(), state, props))
    return out


@translate_errors
def discover(adb: str = "adb") -> list[AdbDevice]:
    p = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise DeviceError(f"adb devices failed: {p.stderr.strip()[-300:]}")
    return parse_devices(p.stdout)


class AndroidBatteryMeter(FuelGaugeMeter):
    """The phone's fuel gauge (``/sys/class/power_supply/battery``) read over a transport:
    the same sampling, integration and charging flag as a local battery."""

    def __init__(self, transport: Transport, rate_hz: float = 5.0, supply: str = SUPPLY) -> None:
        super().__init__(lambda name: transport.read_text(f"{supply}/{name}"), f"{supply} on the device", rate_hz)
        self.transport = transport


def push_folder(transport: Transport, local: Path, remote: str) -> list[str]:
    """Push the files of ``local`` to ``remote``, skipping those whose hash the device
    already holds; returns the names pushed."""
    local = Path(local)
    if not (local / "edgelm.json").exists():
        raise DeviceError(f"{local}: not an edgelm model folder (no edgelm.json)")
    try:
        held = json.loads(transport.read_text(f"{remote}/{HASHES_FILE}") or "{}")
    except (json.JSONDecodeError, RecursionError):
        held = {}
    if not isinstance(held, dict):  # the phone's file is not ours to trust: push everything
        held = {}
    links = [f.name for f in local.iterdir() if f.is_symlink()]
    if links:  # a downloaded folder could link to any file of the user's: never push through one
        raise DeviceError(f"{local}: {links[0]} is a symbolic link; edgelm pushes only the folder's own files")
    hashes = {f.name: sha256_file(f) for f in sorted(local.iterdir()) if f.is_file()}
    transport.run(["mkdir", "-p", remote], timeout=30).check(f"mkdir {remote}")
    pushed = []
    for name, digest in hashes.items():
        if held.get(name) != digest:
            transport.push(local / name, f"{remote}/{name}")
            pushed.append(name)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(hashes, tmp)
    try:
        transport.push(Path(tmp.name), f"{remote}/{HASHES_FILE}")
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    return pushed



_GETPROP = re.compile(r"^\[(?P<key>[^\]]+)\]: \[(?P<value>.*)\]$")


def parse_getprop(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = _GETPROP.match(line.strip())
        if m:
            out[m.group("key")] = m.group("value")
    return out


def parse_meminfo(text: str) -> dict[str, int]:
    """Bytes per field (the file gives kB)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def parse_dumpsys_battery(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key and not line.startswith("Current Battery"):
            out[key.strip()] = value.strip()
    return out


def parse_uevent(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            out[key.removeprefix("POWER_SUPPLY_")] = value
    return out


@dataclass(frozen=True)
class DeviceFacts:
    serial: str
    props: dict[str, str]
    meminfo: dict[str, int]
    battery: dict[str, str]
    supply: dict[str, str]
    cpu_max_khz: list[int]

    @property
    def model(self) -> str:
        return self.props.get("ro.product.model", "unknown phone")

    @property
    def manufacturer(self) -> str:
        return self.props.get("ro.product.manufacturer", "")

    @property
    def soc(self) -> str:
        soc = " ".join(x for x in (self.props.get("ro.soc.manufacturer"), self.props.get("ro.soc.model")) if x)
        return soc or self.props.get("ro.board.platform") or self.props.get("ro.hardware", "unknown SoC")

    @property
    def android_version(self) -> str:
        return self.props.get("ro.build.version.release", "?")

    @property
    def ram_bytes(self) -> int | None:
        return self.meminfo.get("MemTotal")

    @property
    def battery_design_mah(self) -> float | None:
        for key in ("CHARGE_FULL_DESIGN", "CHARGE_FULL"):
            v = self.supply.get(key)
            if v and v.lstrip("-").isdigit() and int(v) > 0:
                return int(v) / 1000  # uAh -> mAh
        return None

    @property
    def charging(self) -> bool:
        return self.supply.get("STATUS") == "Charging" or self.battery.get("status") == "2"


def read_facts(transport: Transport, serial: str) -> DeviceFacts:
    props = parse_getprop(transport.run(["getprop"], timeout=20).stdout)
    meminfo = parse_meminfo(transport.read_text("/proc/meminfo") or "")
    battery = parse_dumpsys_battery(transport.run(["dumpsys", "battery"], timeout=20).stdout)
    supply = parse_uevent(transport.read_text("/sys/class/power_supply/battery/uevent") or "")
    cpus = transport.run(["ls", "/sys/devices/system/cpu"], timeout=10).stdout.split()
    khz = []
    for cpu in sorted(c for c in cpus if re.fullmatch(r"cpu\d+", c)):
        text = transport.read_text(f"/sys/devices/system/cpu/{cpu}/cpufreq/cpuinfo_max_freq")
        if text and text.strip().isdigit():
            khz.append(int(text.strip()))
    return DeviceFacts(serial, props, meminfo, battery, supply, khz)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "my-phone"


def _toml_string(text: str) -> str:
    """A TOML basic string holding ``text`` exactly (JSON's escapes are valid TOML ones;
    control characters are escaped too)."""
    return json.dumps(text, ensure_ascii=False)


def profile_draft(f: DeviceFacts) -> str:
    """A profiles/*.toml draft: read figures say "measured: adb ...", the rest are
    marked as assumptions to be checked."""
    # MemTotal is the RAM left to the kernel (a "12 GB" phone shows ~11.2 GiB): round up
    # to the next size phones are sold with.
    gib = (f.ram_bytes or 4 * 2**30) / 2**30
    ram_gb = next((g for g in (1, 2, 3, 4, 6, 8, 10, 12, 16, 18, 24, 32) if g >= gib), math.ceil(gib))
    top = max(f.cpu_max_khz, default=0)
    big = sum(1 for k in f.cpu_max_khz if k >= 0.9 * top) if top else None
    mah = f.battery_design_mah
    name = f"{f.manufacturer} {f.model}".strip()
    q = _toml_string  # every string the phone reported goes through TOML's escaping
    lines = [f"# Draft made by `edgelm devices --draft-profile` from {q(f.serial)} (Android {q(f.android_version)}).",
             "# Check every 'assumption:' line before trusting the estimates.",
             "schema_version = 1", f"id = {q(_slug(f.model))}", f"name = {q(name)}", 'kind = "phone"',
             'os = "android"', f"soc = {q(f.soc)}", "", "[cpu]", f"cores = {len(f.cpu_max_khz) or 8}"]
    if big:
        lines.append(f"big_cores = {big}")
    if top:
        lines.append(f'max_frequency = "{top / 1e6:.2f} GHz"')
    lines += ["", "[memory]", 'type = "LPDDR5"', f'dram = "{ram_gb} GB"', 'peak_bandwidth = "51.2 GB/s"',
              "sustained_fraction = 0.6", 'dram_energy_per_bit = "4.0 pJ"', "", "[power]", 'active = "3.0 W"',
              'idle = "0.05 W"', "", "[battery]", f'capacity = "{mah or 4000:.0f} mAh"', 'nominal_voltage = "3.87 V"',
              "", "[sources]",
              f'"cpu.cores" = {q("measured: adb /sys/devices/system/cpu on " + f.serial)}',
              f'"memory.dram" = {q("measured: adb /proc/meminfo MemTotal on " + f.serial + ", rounded up to a sold size")}',
              '"memory.peak_bandwidth" = "assumption: LPDDR5-6400 x 64 bit; replace with the SoC\'s published figure"',
              '"memory.sustained_fraction" = "assumption: 50-70% of peak on mobile SoCs"',
              '"memory.dram_energy_per_bit" = "assumption: LPDDR5 figure of the shipped profiles"',
              '"power.active" = "assumption: calibrate with edgelm bench --device adb:SERIAL"',
              '"power.idle" = "assumption: screen-off idle of a modern phone"',
              ('"battery.capacity" = ' + q("measured: power_supply CHARGE_FULL_DESIGN on " + f.serial)) if mah else
              '"battery.capacity" = "assumption: not readable on this phone; use the maker\'s figure"',
              '"battery.nominal_voltage" = "assumption: typical Li-ion nominal voltage"']
    if big:
        lines.append(f'"cpu.big_cores" = {q("measured: cores within 10% of the top cpuinfo_max_freq on " + f.serial)}')
    if top:
        lines.append(f'"cpu.max_frequency" = {q("measured: cpuinfo_max_freq on " + f.serial)}')
    return "\n".join(lines) + "\n"
