"""The phone's fuel gauge, sampled over a transport while a benchmark runs.

Reads ``current_now`` (uA) and ``voltage_now`` (uV) from
``/sys/class/power_supply/battery`` at a stated rate, integrates power over time, and
subtracts an idle baseline measured just before. Gauges disagree on the sign of a
discharging current; the magnitude is used and the sign the device uses is reported."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgelm.bench.meters import FuelGaugeSampler
from edgelm.errors import DeviceError

from .transport import Transport

__all__ = ["BatterySampler", "Sampled"]

SUPPLY = "/sys/class/power_supply/battery"


@dataclass(frozen=True)
class Sampled:
    energy_j: float
    duration_s: float
    samples: int
    rate_hz: float
    sign_convention: str
    charging: bool

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


class BatterySampler:
    def __init__(self, transport: Transport, rate_hz: float = 5.0, supply: str = SUPPLY) -> None:
        self.transport = transport
        self.rate_hz = rate_hz
        self.supply = supply
        self._gauge = FuelGaugeSampler(self._read, rate_hz)
        self._charging = False

    def _read(self) -> tuple[int, int]:
        cur = self.transport.read_text(f"{self.supply}/current_now")
        volt = self.transport.read_text(f"{self.supply}/voltage_now")
        if cur is None or volt is None:
            raise DeviceError(f"cannot read {self.supply}/current_now and voltage_now on the device")
        return int(cur.strip()), int(volt.strip())

    def start(self) -> None:
        status = self.transport.read_text(f"{self.supply}/status")
        self._charging = (status or "").strip() == "Charging"
        self._gauge = FuelGaugeSampler(self._read, self.rate_hz)
        self._gauge.start()

    def stop(self) -> Sampled:
        energy, duration = self._gauge.stop()
        return Sampled(energy, duration, len(self._gauge.samples), self.rate_hz, self._gauge.sign_convention,
                       self._charging)

    def measure(self, seconds: float) -> Sampled:
        self.start()
        time.sleep(seconds)
        return self.stop()
