"""Drive Android phones over adb: the top-level entry the design names, kept thin.

The code lives in the package, below bench: ``edgelm.devices.transport`` (adb or a
local stand-in, argument lists only), ``edgelm.devices.android`` (``adb devices -l``,
facts and a profile draft, the battery meter, pushing a folder) and
``edgelm.bench.remote`` (push, run ``edgelm bench`` on the phone, measure, bring the
record home). This package re-exports them; ``python -m android_bridge`` runs the CLI's
device commands. Nothing in ``edgelm`` imports it.
"""

from edgelm.bench.remote import remote_bench
from edgelm.devices.android import (
    AdbDevice,
    AndroidBatteryMeter,
    DeviceFacts,
    discover,
    parse_devices,
    profile_draft,
    push_folder,
    read_facts,
)
from edgelm.devices.transport import AdbTransport, LocalTransport, Transport

__all__ = ["AdbDevice", "AdbTransport", "AndroidBatteryMeter", "DeviceFacts", "LocalTransport", "Transport",
           "discover", "parse_devices", "profile_draft", "push_folder", "read_facts", "remote_bench"]
