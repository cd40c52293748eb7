"""The phone's fuel gauge, sampled over a transport while a benchmark runs.

Reads ``current_now`` (uA) and ``voltage_now`` (uV) from
``/sys/class/power_supply/battery`` at a stated rate, integrates power over time, and
subtracts an idle baseline measured just before. Gauges disagree on the sign of a
discharging current; the magnitude is used and the sign the device uses is reported."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from edgelm.bench.meters import integrate_power

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
        self._samples: list[tuple[float, float]] = []
        self._negative = False
        self._charging = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read_power_w(self) -> float:
        cur = self.transport.read_text(f"{self.supply}/current_now")
        volt = self.transport.read_text(f"{self.supply}/voltage_now")
        if cur is None or volt is None:
            from edgelm.errors import DeviceError

            raise DeviceError(f"cannot read {self.supply}/current_now and voltage_now on the device")
        current_ua, voltage_uv = int(cur.strip()), int(volt.strip())
        if current_ua < 0:
            self._negative = True
        return abs(current_ua) * 1e-6 * voltage_uv * 1e-6

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz
        while not self._stop.is_set():
            self._samples.append((time.perf_counter(), self.read_power_w()))
            self._stop.wait(period)

    def start(self) -> None:
        status = self.transport.read_text(f"{self.supply}/status")
        self._charging = (status or "").strip() == "Charging"
        self._samples = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> Sampled:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        s = self._samples
        duration = s[-1][0] - s[0][0] if len(s) > 1 else 0.0
        conv = "negative current = discharge" if self._negative else "positive current = discharge"
        return Sampled(integrate_power(s), duration, len(s), self.rate_hz, conv, self._charging)

    def measure(self, seconds: float) -> Sampled:
        self.start()
        time.sleep(seconds)
        return self.stop()
