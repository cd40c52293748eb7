"""Drive Android phones over adb: discover them, read their facts into a profile draft,
push a model folder, run the edgelm benchmark there and measure the battery meanwhile.

Modules: ``transport`` (adb or a local stand-in, argument lists only), ``discover``
(``adb devices -l``), ``facts`` (getprop, meminfo, dumpsys battery, power_supply ->
profile draft), ``battery`` (fuel-gauge sampling), ``remote_bench`` (push, run, pull).
"""

from .discover import AdbDevice, discover, parse_devices
from .transport import AdbTransport, LocalTransport, Transport

__all__ = ["AdbDevice", "AdbTransport", "LocalTransport", "Transport", "discover", "parse_devices"]
