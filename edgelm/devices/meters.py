"""Energy meters: Linux powercap (RAPL), NVIDIA NVML, a battery fuel gauge.

Each meter reads a counter or samples power while a measured block runs and returns a
:class:`Reading`. Hardware sits behind a root path (``/sys`` by default) so tests run
each meter on a file tree shaped like the real one. :func:`find_meter` picks the first
that works. A phone's gauge read over adb is the same :class:`FuelGaugeMeter` with its
files read through a transport (``edgelm.devices.android.AndroidBatteryMeter``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceError, EdgeLMError

__all__ = ["FuelGaugeSampler", "FuelGaugeMeter", "Meter", "RaplMeter", "NvmlMeter", "PowerSupplyMeter", "find_meter",
           "Reading", "integrate_power", "net_joules"]


def integrate_power(samples: list[tuple[float, float]]) -> float:
    """Joules from (time s, power W) samples, by the trapezoid rule."""
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False))


@dataclass(frozen=True)
class Reading:
    """Joules over ``duration_s`` between a meter's start and stop; a sampling meter also
    says how it sampled, and a battery whether it was charging (which makes the figure
    meaningless)."""

    energy_j: float
    duration_s: float
    samples: int
    detail: str = ""
    rate_hz: float | None = None
    sign_convention: str | None = None
    charging: bool = False

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else 0.0


def net_joules(reading: Reading, idle_w: float) -> float:
    """The reading's energy above an idle baseline of ``idle_w`` watts (never below zero):
    the one place idle power is subtracted."""
    return max(0.0, reading.energy_j - idle_w * reading.duration_s)


class Meter:
    """Measures energy between :meth:`start` and :meth:`stop`."""

    name = "meter"

    def available(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> Reading:
        raise NotImplementedError

    def measure(self, seconds: float) -> Reading:
        """A reading over ``seconds`` of doing nothing (the idle baseline)."""
        self.start()
        time.sleep(seconds)
        return self.stop()


class RaplMeter(Meter):
    """Intel/AMD RAPL through powercap: ``intel-rapl:N`` package domains and their
    ``dram`` subdomains, ``energy_uj`` counters that wrap at ``max_energy_range_uj``."""

    name = "rapl"

    def __init__(self, root: Path | str = "/sys/class/powercap") -> None:
        self.root = Path(root)
        self._start: dict[Path, int] = {}
        self._t0 = 0.0

    def domains(self) -> list[Path]:
        found = []
        for d in sorted(self.root.glob("intel-rapl:*")):
            name = (d / "name").read_text().strip() if (d / "name").exists() else ""
            # Package domains are intel-rapl:N; their dram subdomain intel-rapl:N:M. Core /
            # uncore subdomains are inside the package figure already.
            if d.name.count(":") == 1 or name == "dram":
                if (d / "energy_uj").exists():
                    found.append(d)
        return found

    def available(self) -> bool:
        try:
            return any(int((d / "energy_uj").read_text()) >= 0 for d in self.domains())
        except (OSError, ValueError):
            return False

    def _read(self, d: Path) -> int:
        return int((d / "energy_uj").read_text())

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = {d: self._read(d) for d in self.domains()}

    def stop(self) -> Reading:
        total_uj = 0
        names = []
        for d, e0 in self._start.items():
            e1 = self._read(d)
            delta = e1 - e0
            if delta < 0:  # the counter wrapped
                delta += int((d / "max_energy_range_uj").read_text())
            total_uj += delta
            names.append((d / "name").read_text().strip() if (d / "name").exists() else d.name)
        return Reading(total_uj / 1e6, time.perf_counter() - self._t0, 2, "+".join(names))


class NvmlMeter(Meter):
    """NVIDIA GPUs' total-energy counter (millijoules) through pynvml, where present."""

    name = "nvml"

    def __init__(self) -> None:
        self._handles: list[object] = []
        self._e0: list[int] = []
        self._t0 = 0.0

    def available(self) -> bool:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            n = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(n)]
            for h in self._handles:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            return n > 0
        except Exception:  # noqa: BLE001 - no library, no driver, no GPU: all mean "not available"
            return False

    def start(self) -> None:
        import pynvml

        self._t0 = time.perf_counter()
        self._e0 = [pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]

    def stop(self) -> Reading:
        import pynvml

        e1 = [pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
        return Reading(sum(b - a for a, b in zip(self._e0, e1, strict=True)) / 1e3, time.perf_counter() - self._t0, 2)


class FuelGaugeSampler:
    """Samples a fuel gauge's current (uA) and voltage (uV) on a thread at ``rate_hz``.

    ``read`` returns ``(current_ua, voltage_uv)`` from wherever the gauge is: local sysfs
    here, a phone's over a transport. Gauges disagree on the sign of a
    discharging current; the magnitude is used and the sign seen is recorded."""

    #: Plausible gauge readings (a phone draws well under 100 A; its cell is under 100 V):
    #: anything outside is a broken or hostile gauge, not a measurement.
    MAX_CURRENT_UA = 10**8
    MAX_VOLTAGE_UV = 10**8

    def __init__(self, read: Callable[[], tuple[int, int]], rate_hz: float) -> None:
        if not 0 < rate_hz <= 1000:
            raise DeviceError(f"sample rate must be in (0, 1000] Hz, got {rate_hz}")
        self.read = read
        self.rate_hz = rate_hz
        self.samples: list[tuple[float, float]] = []
        self.negative_discharge = False
        self.error: str | None = None  # why sampling stopped early (an unreadable gauge)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def power_w(self) -> float:
        current_ua, voltage_uv = self.read()
        if not (abs(current_ua) < self.MAX_CURRENT_UA and 0 < voltage_uv < self.MAX_VOLTAGE_UV):
            raise ValueError(f"implausible gauge reading: {current_ua} uA at {voltage_uv} uV")
        if current_ua < 0:
            self.negative_discharge = True
        return abs(current_ua) * 1e-6 * voltage_uv * 1e-6

    def _loop(self) -> None:
        period = 1.0 / self.rate_hz
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter(), self.power_w()))
            except (ValueError, TypeError, OSError, EdgeLMError) as e:
                # Reported by stop() as one error; a traceback on this thread would
                # leave a run that looks measured.
                self.error = str(e) or type(e).__name__
                return
            self._stop.wait(period)

    def start(self) -> None:
        self.samples = []
        self.error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float, float]:
        """(joules, seconds) over the samples taken since :meth:`start`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise DeviceError(f"the battery gauge could not be read ({self.error[:200]}): no energy was measured")
        s = self.samples
        return integrate_power(s), (s[-1][0] - s[0][0] if len(s) > 1 else 0.0)

    @property
    def sign_convention(self) -> str:
        return "negative current = discharge" if self.negative_discharge else "positive current = discharge"


class FuelGaugeMeter(Meter):
    """A battery fuel gauge: a power-supply folder's ``current_now`` (uA) and
    ``voltage_now`` (uV), sampled at ``rate_hz`` while the block runs and integrated.
    ``read_text(name)`` returns a file of the folder (None when unreadable), so the same
    meter reads local sysfs or a phone's over a transport. Charging is flagged."""

    name = "battery"

    def __init__(self, read_text: Callable[[str], str | None], where: str, rate_hz: float = 20.0) -> None:
        self.read_text = read_text
        self.where = where
        self.rate_hz = rate_hz
        self.charging = False
        self._sampler: FuelGaugeSampler | None = None

    def _read(self) -> tuple[int, int]:
        cur, volt = self.read_text("current_now"), self.read_text("voltage_now")
        if cur is None or volt is None:
            raise DeviceError(f"cannot read {self.where}/current_now and voltage_now")
        return int(cur.strip()), int(volt.strip())

    def available(self) -> bool:
        try:
            self._read()
        except (OSError, ValueError, DeviceError):
            return False
        return True

    def start(self) -> None:
        self.charging = (self.read_text("status") or "").strip() == "Charging"
        self._sampler = FuelGaugeSampler(self._read, self.rate_hz)
        self._sampler.start()

    def stop(self) -> Reading:
        assert self._sampler is not None, "stop() before start()"
        energy, duration = self._sampler.stop()
        n = len(self._sampler.samples)
        sign = self._sampler.sign_convention
        if n < 2:
            return Reading(0.0, 0.0, n, "too few samples", self.rate_hz, sign, self.charging)
        detail = f"{n} samples at {self.rate_hz:g} Hz, {sign}" + ("; CHARGING: meaningless" if self.charging else "")
        return Reading(energy, duration, n, detail, self.rate_hz, sign, self.charging)


def _local_reader(folder: Path) -> Callable[[str], str | None]:
    def read(name: str) -> str | None:
        try:
            return (folder / name).read_text()
        except OSError:
            return None

    return read


class PowerSupplyMeter(FuelGaugeMeter):
    """This machine's battery: the first ``Battery`` folder under
    ``/sys/class/power_supply`` with a current and a voltage (or the one given)."""

    def __init__(self, supply: Path | str | None = None, root: Path | str = "/sys/class/power_supply",
                 rate_hz: float = 20.0) -> None:
        self.root = Path(root)
        folder = Path(supply) if supply else self._find()
        self.folder = folder
        super().__init__(_local_reader(folder) if folder else (lambda name: None), str(folder or self.root),
                         rate_hz)

    def _find(self) -> Path | None:
        for d in sorted(self.root.glob("*")):
            kind = (d / "type").read_text().strip() if (d / "type").exists() else ""
            if kind == "Battery" and (d / "current_now").exists() and (d / "voltage_now").exists():
                return d
        return None

    def start(self) -> None:
        if self.folder is None:
            raise OSError("no battery power supply found")
        super().start()


def find_meter(sys_root: Path | str = "/sys") -> Meter | None:
    root = Path(sys_root)
    for meter in (RaplMeter(root / "class/powercap"), NvmlMeter(), PowerSupplyMeter(root=root / "class/power_supply")):
        if meter.available():
            return meter
    return None
