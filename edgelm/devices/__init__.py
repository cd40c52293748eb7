"""What edgelm knows of the hardware it measures on, below bench: energy meters
(``meters``: RAPL, NVML, a battery fuel gauge), how commands reach a device
(``transport``: adb, or this machine as a stand-in) and Android phones (``android``:
discovery, facts and a profile draft, the battery meter over adb, pushing a folder).
Nothing here imports bench, the runtime or the CLI."""

from .android import AdbDevice, AndroidBatteryMeter, discover, parse_devices, push_folder
from .meters import FuelGaugeMeter, Meter, PowerSupplyMeter, Reading, find_meter
from .transport import AdbTransport, LocalTransport, Transport

__all__ = ["AdbDevice", "AdbTransport", "AndroidBatteryMeter", "FuelGaugeMeter", "LocalTransport", "Meter",
           "PowerSupplyMeter", "Reading", "Transport", "discover", "find_meter", "parse_devices", "push_folder"]
