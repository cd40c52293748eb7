"""Quantities with units in profile files: "12 GB", "68.3 GB/s", "5050 mAh", "3.89 V", "3.5 W".

Each field declares its dimension; a value is a number in the field's base unit or a
string "NUMBER UNIT" with a unit of that dimension. Anything else is an error naming
the field.
"""

from __future__ import annotations

import re

__all__ = ["UNITS", "parse_quantity", "UnitError"]

#: dimension -> unit -> factor to the base unit (bytes, bytes/s, mAh, V, W, J, pJ, Hz)
UNITS: dict[str, dict[str, float]] = {
    "bytes": {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 1024, "MiB": 1024**2,
              "GiB": 1024**3},
    "bytes_per_s": {"B/s": 1, "MB/s": 1e6, "GB/s": 1e9, "GiB/s": 1024**3},
    "mah": {"mAh": 1, "Ah": 1000},
    "volts": {"V": 1, "mV": 1e-3},
    "watts": {"W": 1, "mW": 1e-3},
    "joules": {"J": 1, "kJ": 1e3, "Wh": 3600},
    "pj": {"pJ": 1, "fJ": 1e-3, "nJ": 1e3},
    "hz": {"Hz": 1, "MHz": 1e6, "GHz": 1e9},
    "ratio": {"": 1, "%": 0.01},
    "seconds": {"s": 1, "ms": 1e-3},
    "bits_per_s": {"bit/s": 1, "kbit/s": 1e3, "Mbit/s": 1e6, "Mbps": 1e6, "Gbit/s": 1e9, "Gbps": 1e9},
    "watts_per_mbps": {"W/Mbps": 1, "mW/Mbps": 1e-3},
    "usd": {"": 1, "USD": 1},
    "count": {"": 1},
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/%]*)\s*$")


class UnitError(ValueError):
    pass


def parse_quantity(value: object, dimension: str) -> float:
    units = UNITS[dimension]
    if isinstance(value, bool):
        raise UnitError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a number or a string like '12 GB', got {value!r}")
    m = _QUANTITY.match(value)
    if not m:
        raise UnitError(f"cannot read {value!r} as a quantity")
    number, unit = float(m.group(1)), m.group(2)
    if unit not in units:
        known = ", ".join(u for u in units if u) or "none"
        raise UnitError(f"unknown unit {unit!r} in {value!r} (expected one of: {known})")
    return number * units[unit]
