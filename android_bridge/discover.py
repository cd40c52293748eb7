"""``adb devices -l``: which phones are attached, and in what state."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field

from edgelm.errors import DeviceError

from .transport import translate_errors

__all__ = ["AdbDevice", "parse_devices", "discover", "describe_state"]

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
