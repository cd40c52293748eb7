"""How commands reach a device. Every command is an argument list; nothing a user typed
is ever pasted into a shell unquoted.

``adb shell`` joins its arguments into one string for the device's shell, so
:class:`AdbTransport` quotes each argument with :func:`shlex.quote` first. The
:class:`LocalTransport` runs the same argument lists on this machine, with device paths
mapped under a folder, so the whole flow is tested without a phone.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgelm.errors import DeviceError

__all__ = ["Transport", "AdbTransport", "LocalTransport", "Result", "translate_errors"]

F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(fn: F) -> F:
    """Turn subprocess and OS failures into DeviceError, in one place."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as e:
            raise DeviceError(f"{e.filename or 'adb'} not found: install Android platform tools "
                              "(Debian: apt-get install adb)") from e
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"device command timed out after {e.timeout:g} s: {shlex.join(map(str, e.cmd))}") from e
        except OSError as e:
            raise DeviceError(f"device command failed: {e}") from e

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Result:
        if self.returncode != 0:
            raise DeviceError(f"{what} failed (exit {self.returncode}): {self.stderr.strip()[-300:]}")
        return self


class Transport:
    """Run argument lists on a device and move files to and from it."""

    name = "transport"

    def run(self, args: Sequence[str], timeout: float = 60.0) -> Result:
        raise NotImplementedError

    def start(self, args: Sequence[str]) -> subprocess.Popen[str]:
        raise NotImplementedError

    def push(self, local: Path, remote: str) -> None:
        raise NotImplementedError

    def pull(self, remote: str, local: Path) -> None:
        raise NotImplementedError

    def read_text(self, remote: str) -> str | None:
        r = self.run(["cat", remote], timeout=10)
        return r.stdout if r.returncode == 0 else None


class AdbTransport(Transport):
    name = "adb"

    def __init__(self, serial: str, adb: str = "adb") -> None:
        self.serial = serial
        self.adb = adb

    def _base(self) -> list[str]:
        return [self.adb, "-s", self.serial]

    def shell_command(self, args: Sequence[str]) -> list[str]:
        """The host argument list for ``adb shell``: the device command quoted as one string."""
        return [*self._base(), "shell", shlex.join(args)]

    @translate_errors
    def run(self, args: Sequence[str], timeout: float = 60.0) -> Result:
        p = subprocess.run(self.shell_command(args), capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)

    @translate_errors
    def start(self, args: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(self.shell_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")

    @translate_errors
    def push(self, local: Path, remote: str) -> None:
        p = subprocess.run([*self._base(), "push", str(local), remote], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
        Result(p.returncode, p.stdout, p.stderr).check(f"adb push {local}")

    @translate_errors
    def pull(self, remote: str, local: Path) -> None:
        p = subprocess.run([*self._base(), "pull", remote, str(local)], capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600)
        Result(p.returncode, p.stdout, p.stderr).check(f"adb pull {remote}")


class LocalTransport(Transport):
    """This machine as the device: device paths live under ``root``. Commands run with
    no shell; every absolute path after the program name is a device path and is mapped
    under root (the program itself is found on ``env``'s PATH, or given absolute)."""

    name = "local"

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.env = {**os.environ, **(env or {})}

    def local_path(self, remote: str) -> Path:
        return self.root / remote.lstrip("/")

    def _map(self, args: Sequence[str]) -> list[str]:
        out = [str(args[0])]
        for a in args[1:]:
            a = str(a)
            out.append(str(self.local_path(a)) if a.startswith("/") else a)
        return out

    @translate_errors
    def run(self, args: Sequence[str], timeout: float = 60.0) -> Result:
        p = subprocess.run(self._map(args), capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout, env=self.env)
        return Result(p.returncode, p.stdout, p.stderr)

    @translate_errors
    def start(self, args: Sequence[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(self._map(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                env=self.env)

    @translate_errors
    def push(self, local: Path, remote: str) -> None:
        dst = self.local_path(remote)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dst)

    @translate_errors
    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(self.local_path(remote), local)

    def read_text(self, remote: str) -> str | None:
        p = self.local_path(remote)
        return p.read_text() if p.exists() else None
