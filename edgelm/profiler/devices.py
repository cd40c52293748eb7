"""Device profiles: phones and edge boards, every number with its source.

A profile is a TOML file (``profiles/*.toml``; a user passes their own by path). Each
numeric field is a number in the base unit or a string with a unit ("12 GB"), and each
must have an entry in ``[sources]``: a URL or document, or a string starting with
"assumption:" that says why the value was chosen. :func:`load_profile` checks all of it
and names the file and the field on any error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ProfileError
from .units import UnitError, parse_quantity

__all__ = ["DeviceProfile", "load_profile", "list_profiles", "profiles_dir", "get_profile", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
KINDS = ("phone", "board", "laptop", "desktop")
DRAM_TYPES = ("LPDDR4", "LPDDR4X", "LPDDR5", "LPDDR5X", "DDR4", "DDR5")

# field path -> (dimension, required)
_FIELDS: dict[str, tuple[str, bool]] = {
    "memory.dram": ("bytes", True),
    "memory.peak_bandwidth": ("bytes_per_s", True),
    "memory.sustained_fraction": ("ratio", True),
    "memory.dram_energy_per_bit": ("pj", True),
    "cpu.cores": ("count", True),
    "cpu.big_cores": ("count", False),
    "cpu.max_frequency": ("hz", False),
    "power.active": ("watts", True),
    "power.idle": ("watts", True),
    "battery.capacity": ("mah", False),
    "battery.nominal_voltage": ("volts", False),
}
#: The range a real device's figure lies in (base units). Generous, but they keep inf, 1e30
#: and subnormal values (which would print as Infinity or divide into nonsense) out of a
#: profile: a value outside is a typo or a forgery, and an error naming the field.
_RANGES: dict[str, tuple[float, float]] = {
    "memory.dram": (64e6, 64e12),
    "memory.peak_bandwidth": (1e8, 1e13),
    "memory.sustained_fraction": (0.01, 1.0),
    "memory.dram_energy_per_bit": (0.1, 1000.0),
    "cpu.cores": (1, 1024),
    "cpu.big_cores": (1, 1024),
    "cpu.max_frequency": (1e7, 1e11),
    "power.active": (0.01, 10_000.0),
    "power.idle": (0.0001, 10_000.0),
    "battery.capacity": (10.0, 1e6),
    "battery.nominal_voltage": (0.5, 100.0),
}


@dataclass(frozen=True)
class DeviceProfile:
    """A device's figures in base units (bytes, bytes/s, W, mAh, V, pJ)."""

    id: str
    name: str
    kind: str
    os: str
    soc: str
    dram_type: str
    dram_bytes: float
    peak_bandwidth_bps: float
    sustained_fraction: float
    dram_energy_pj_per_bit: float
    cpu_cores: int
    active_power_w: float
    idle_power_w: float
    battery_mah: float | None
    battery_voltage_v: float | None
    path: str
    big_cores: int | None = None
    max_frequency_hz: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    @property
    def sustained_bandwidth_bps(self) -> float:
        return self.peak_bandwidth_bps * self.sustained_fraction

    @property
    def battery_wh(self) -> float | None:
        if self.battery_mah is None or self.battery_voltage_v is None:
            return None
        return self.battery_mah / 1000 * self.battery_voltage_v

    @property
    def battery_j(self) -> float | None:
        wh = self.battery_wh
        return None if wh is None else wh * 3600

    def assumptions(self) -> list[str]:
        return sorted(k for k, v in self.sources.items() if v.lower().startswith("assumption"))

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["battery_wh"] = self.battery_wh
        d["battery_j"] = self.battery_j
        d["sustained_bandwidth_bps"] = self.sustained_bandwidth_bps
        return d


def profiles_dir() -> Path:
    """The profiles shipped with edgelm (``profiles/`` at the repository root)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "profiles"
        if cand.is_dir() and any(cand.glob("*.toml")):
            return cand
    raise ProfileError("the profiles/ folder is missing from this installation")


def _get(data: dict[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def read_profile_toml(path: Path, what: str = "") -> tuple[dict[str, Any], Any]:
    """A profile file's TOML and its ``fail(field, message)``: every error one line naming
    the file (and the field)."""
    where = str(path)
    kind = f"{what} " if what else ""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{where}: no such {kind}profile file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{where}: unreadable ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{where}: not valid TOML ({e})") from None

    def fail(field_name: str, msg: str) -> ProfileError:
        return ProfileError(f"{where}: field {field_name}: {msg}")

    return data, fail


def load_profile(path: Path | str) -> DeviceProfile:
    path = Path(path)
    where = str(path)
    data, fail = read_profile_toml(path)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise fail("schema_version", f"must be {SCHEMA_VERSION}, got {data.get('schema_version')!r}")
    for key in ("id", "name", "kind", "os", "soc"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail(key, "missing (a non-empty string)")
    if data["kind"] not in KINDS:
        raise fail("kind", f"must be one of {', '.join(KINDS)}, got {data['kind']!r}")
    dram_type = _get(data, "memory.type")
    if dram_type not in DRAM_TYPES:
        raise fail("memory.type", f"must be one of {', '.join(DRAM_TYPES)}, got {dram_type!r}")
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise fail("sources", "must be a table of field = source")
    values = read_sourced(data, _FIELDS, _RANGES, sources, fail, "device")
    if (values["battery.capacity"] is None) != (values["battery.nominal_voltage"] is None):
        raise fail("battery", "give both capacity and nominal_voltage, or neither")
    if data["kind"] == "phone" and values["battery.capacity"] is None:
        raise fail("battery.capacity", "missing (required for a phone)")

    def as_int(name: str) -> int | None:
        v = values[name]
        if v is None:
            return None
        if v != int(v):
            raise fail(name, f"must be a whole number, got {v}")
        return int(v)

    cores = as_int("cpu.cores")
    assert cores is not None
    return DeviceProfile(
        id=data["id"], name=data["name"], kind=data["kind"], os=data["os"], soc=data["soc"], dram_type=dram_type,
        dram_bytes=values["memory.dram"] or 0.0, peak_bandwidth_bps=values["memory.peak_bandwidth"] or 0.0,
        sustained_fraction=values["memory.sustained_fraction"] or 0.0,
        dram_energy_pj_per_bit=values["memory.dram_energy_per_bit"] or 0.0, cpu_cores=cores,
        active_power_w=values["power.active"] or 0.0, idle_power_w=values["power.idle"] or 0.0,
        battery_mah=values["battery.capacity"], battery_voltage_v=values["battery.nominal_voltage"],
        path=where, big_cores=as_int("cpu.big_cores"), max_frequency_hz=values["cpu.max_frequency"],
        sources=dict(sources), notes=str(data.get("notes", "")))


def read_sourced(data: dict[str, Any], fields: dict[str, tuple[str, bool]], ranges: dict[str, tuple[float, float]],
                 sources: dict[str, Any], fail: Any, what: str) -> dict[str, float | None]:
    """The numeric fields of a sourced profile: each parsed in its dimension's units,
    inside its range, and with an entry in ``[sources]`` (a URL, a document or
    "assumption: why"); ``fail(field, message)`` makes the error naming the field."""
    values: dict[str, float | None] = {}
    for name, (dim, required) in fields.items():
        raw = _get(data, name)
        if raw is None:
            if required:
                raise fail(name, "missing")
            values[name] = None
            continue
        try:
            v = parse_quantity(raw, dim)
        except UnitError as e:
            raise fail(name, str(e)) from e
        lo, hi = ranges[name]
        if not (math.isfinite(v) and lo <= v <= hi):
            raise fail(name, f"must lie in [{lo:g}, {hi:g}] (base units) for a real {what}, got {raw!r}")
        if not isinstance(sources.get(name), str) or not sources[name].strip():
            raise fail(name, "has no source: add it under [sources] (a URL, a document, or 'assumption: why')")
        values[name] = v
    return values


def list_profiles(folder: Path | None = None) -> list[DeviceProfile]:
    folder = folder or profiles_dir()
    return [load_profile(p) for p in sorted(Path(folder).glob("*.toml"))]


def find_profile(id_or_path: str, folder: Path, load: Any, kind: str) -> Any:
    """A shipped profile by id (``folder/ID.toml``) or a user's file by path, read by
    ``load``; an unknown id is one line listing the known ones."""
    p = Path(id_or_path)
    if p.suffix == ".toml" or p.exists():
        return load(p)
    candidate = folder / f"{id_or_path}.toml"
    if candidate.exists():
        return load(candidate)
    known = ", ".join(sorted(x.stem for x in folder.glob("*.toml")))
    raise ProfileError(f"unknown {kind} {id_or_path!r} (known: {known}; or pass a profile .toml path)")


def get_profile(id_or_path: str) -> DeviceProfile:
    """A shipped profile by id, or a user's profile file by path."""
    return find_profile(id_or_path, profiles_dir(), load_profile, "device")  # type: ignore[no-any-return]
