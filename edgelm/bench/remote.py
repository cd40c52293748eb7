"""``edgelm bench --device adb:SERIAL``: push a model folder to a phone, run ``edgelm bench``
there while this machine samples the phone's battery, and bring the record home.

The on-device side is edgelm's own runtime (onnxruntime, numpy, tokenizers and the
compiled kernels, e.g. in Termux: ``pip install edgelm``). The phone's JSON is parsed into
a :class:`BenchRecord` like any record from outside, and its energy is the battery
meter's, through the same idle subtraction and :func:`measured_energy` as a local run;
only the transport differs (:class:`LocalTransport` in the tests).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from ..devices.android import AndroidBatteryMeter, push_folder
from ..devices.meters import net_joules
from ..devices.transport import Transport
from ..errors import DeviceError
from .record import BenchRecord, RecordError
from .runner import measured_energy

__all__ = ["remote_bench"]


def remote_bench(transport: Transport, serial: str, model_dir: Path, *, remote_root: str = "/data/local/tmp/edgelm",
                 python: str = "python3", prompt_tokens: int = 128, new_tokens: int = 64, runs: int = 5,
                 warmup: int = 1, threads: int | None = None, sample_rate_hz: float = 5.0, idle_s: float = 3.0,
                 extra_args: Sequence[str] = (), as_profile: str | None = None) -> BenchRecord:
    """Bench ``model_dir`` on the device; the phone's JSON is parsed into a BenchRecord (a
    wrong shape is a DeviceError naming the field) and its energy replaced by the battery's."""
    model_dir = Path(model_dir)
    remote = f"{remote_root}/{model_dir.name}"
    pushed = push_folder(transport, model_dir, remote)
    meter = AndroidBatteryMeter(transport, rate_hz=sample_rate_hz)
    idle = meter.measure(idle_s)
    cmd = [python, "-m", "edgelm.cli", "bench", remote, "--json", "--no-store", "--prompt-tokens", str(prompt_tokens),
           "--new-tokens", str(new_tokens), "--runs", str(runs), "--warmup", str(warmup), *extra_args]
    if threads:
        cmd += ["--threads", str(threads)]
    meter.start()
    t0 = time.perf_counter()
    proc = transport.start(cmd)
    out, err = proc.communicate()
    active = meter.stop()
    if proc.returncode != 0:
        raise DeviceError(f"edgelm bench on {serial} failed (exit {proc.returncode}): {err.strip()[-300:]}")
    try:
        record = BenchRecord.from_dict(json.loads(out), where=f"the bench result from {serial}")
    except (json.JSONDecodeError, RecursionError) as e:
        raise DeviceError(f"edgelm bench on {serial} printed no JSON result: {out.strip()[-200:]!r}") from e
    except RecordError as e:
        raise DeviceError(str(e)) from None
    tokens = (runs + warmup) * new_tokens * record.settings.sequences
    energy = measured_energy(meter.name, net_joules(active, idle.power_w) / tokens, [active], idle,
                             "whole benchmark process (load, prefill and decode) per generated token, "
                             "idle subtracted")
    device = dataclasses.replace(record.device, id=f"adb:{serial}", transport=transport.name, profile=as_profile)
    push = {"remote": remote, "files_pushed": pushed, "seconds": round(time.perf_counter() - t0, 2)}
    return dataclasses.replace(record, device=device, energy=energy, push=push)
