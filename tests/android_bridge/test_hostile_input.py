"""Serials and paths with spaces, quotes, ';' and '$()' reach the device as data.

A fake ``adb`` on PATH does what the real one does with ``adb -s SERIAL shell CMD``:
it hands CMD to a POSIX shell. If anything were interpolated unquoted, the payload
would create a marker file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgelm.devices.android import discover
from edgelm.devices.transport import AdbTransport
from edgelm.errors import DeviceError

HOSTILE = ["emulator-5554; touch {m}", "x$(touch {m})", "a b 'c' \"d\"", "`touch {m}`", "x && touch {m} #"]


def _fake_adb(tmp_path: Path) -> Path:
    log = tmp_path / "argv.log"
    adb = tmp_path / "adb"
    adb.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys\n"
        f"open({str(log)!r}, 'a').write(repr(sys.argv[1:]) + '\\n')\n"
        "args = sys.argv[1:]\n"
        "if args[:2] == ['devices', '-l']:\n"
        "    print('List of devices attached'); print(); sys.exit(0)\n"
        "if len(args) >= 4 and args[0] == '-s' and args[2] == 'shell':\n"
        "    sys.exit(subprocess.run(['sh', '-c', args[3]]).returncode)\n"
        "sys.exit(0)\n")
    adb.chmod(adb.stat().st_mode | stat.S_IEXEC)
    return adb


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_serial_and_path_stay_data(template: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    adb = _fake_adb(tmp_path)
    hostile = template.format(m=marker)
    t = AdbTransport(hostile, adb=str(adb))
    target = tmp_path / hostile.replace("/", "_")
    r = t.run(["touch", str(target)])
    assert r.returncode == 0, r.stderr
    assert target.exists()  # the whole string was one file name
    assert not marker.exists()
    t.push(tmp_path / "argv.log", f"/sdcard/{hostile}")  # argument list: no shell on the host
    assert not marker.exists()


def test_no_device_attached_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_adb(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert discover() == []
    out = subprocess.run([sys.executable, "-m", "edgelm.cli", "devices"], capture_output=True, text=True,
                         env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert out.returncode == 0 and "no Android device connected" in out.stdout


def test_adb_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="not found"):
        discover(adb=str(tmp_path / "no-adb-here"))
    out = subprocess.run([sys.executable, "-m", "edgelm.cli", "devices"], capture_output=True, text=True,
                         env={**os.environ, "PATH": str(tmp_path)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "adb" in out.stderr
