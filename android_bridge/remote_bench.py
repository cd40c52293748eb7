"""Push a model folder to a device, run ``edgelm bench`` there while sampling the
battery, and bring the result home to the local results store.

The on-device side is edgelm's own runtime (onnxruntime, numpy, tokenizers and the
compiled kernels, e.g. in Termux: ``pip install edgelm``); the same command runs on
this machine through :class:`LocalTransport` in the tests, so only the transport differs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edgelm._io import sha256_file
from edgelm.bench.record import BenchEnergy, BenchRecord, RecordError
from edgelm.errors import DeviceError

from .battery import BatterySampler
from .transport import Transport

__all__ = ["push_folder", "remote_bench", "HASHES_FILE"]

HASHES_FILE = ".edgelm-sha256.json"


def push_folder(transport: Transport, local: Path, remote: str) -> list[str]:
    """Push the files of ``local`` to ``remote``, skipping those whose hash the device
    already holds; returns the names pushed."""
    local = Path(local)
    if not (local / "edgelm.json").exists():
        raise DeviceError(f"{local}: not an edgelm model folder (no edgelm.json)")
    try:
        held = json.loads(transport.read_text(f"{remote}/{HASHES_FILE}") or "{}")
    except (json.JSONDecodeError, RecursionError):
        held = {}
    if not isinstance(held, dict):  # the phone's file is not ours to trust: push everything
        held = {}
    links = [f.name for f in local.iterdir() if f.is_symlink()]
    if links:  # a downloaded folder could link to any file of the user's: never push through one
        raise DeviceError(f"{local}: {links[0]} is a symbolic link; edgelm pushes only the folder's own files")
    hashes = {f.name: sha256_file(f) for f in sorted(local.iterdir()) if f.is_file()}
    transport.run(["mkdir", "-p", remote], timeout=30).check(f"mkdir {remote}")
    pushed = []
    for name, digest in hashes.items():
        if held.get(name) != digest:
            transport.push(local / name, f"{remote}/{name}")
            pushed.append(name)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(hashes, tmp)
    try:
        transport.push(Path(tmp.name), f"{remote}/{HASHES_FILE}")
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    return pushed


def remote_bench(transport: Transport, serial: str, model_dir: Path, *, remote_root: str = "/data/local/tmp/edgelm",
                 python: str = "python3", prompt_tokens: int = 128, new_tokens: int = 64, runs: int = 5,
                 warmup: int = 1, threads: int | None = None, sample_rate_hz: float = 5.0, idle_s: float = 3.0,
                 extra_args: Sequence[str] = (), as_profile: str | None = None) -> BenchRecord:
    """Bench ``model_dir`` on the device; the phone's JSON is parsed into a BenchRecord (a
    wrong shape is a DeviceError naming the field) and its energy replaced by the battery's."""
    model_dir = Path(model_dir)
    remote = f"{remote_root}/{model_dir.name}"
    pushed = push_folder(transport, model_dir, remote)
    sampler = BatterySampler(transport, rate_hz=sample_rate_hz)
    idle = sampler.measure(idle_s)
    cmd = [python, "-m", "edgelm.cli", "bench", remote, "--json", "--no-store", "--prompt-tokens", str(prompt_tokens),
           "--new-tokens", str(new_tokens), "--runs", str(runs), "--warmup", str(warmup), *extra_args]
    if threads:
        cmd += ["--threads", str(threads)]
    sampler.start()
    t0 = time.perf_counter()
    proc = transport.start(cmd)
    out, err = proc.communicate()
    active = sampler.stop()
    if proc.returncode != 0:
        raise DeviceError(f"edgelm bench on {serial} failed (exit {proc.returncode}): {err.strip()[-300:]}")
    try:
        record = BenchRecord.from_dict(json.loads(out), where=f"the bench result from {serial}")
    except (json.JSONDecodeError, RecursionError) as e:
        raise DeviceError(f"edgelm bench on {serial} printed no JSON result: {out.strip()[-200:]!r}") from e
    except RecordError as e:
        raise DeviceError(str(e)) from None
    tokens = (runs + warmup) * new_tokens
    net_j = max(0.0, active.energy_j - idle.power_w * active.duration_s)
    charging = active.charging or idle.charging
    energy = BenchEnergy(
        net_j / tokens, "measured:battery",
        scope="whole benchmark process (load, prefill and decode) per generated token, idle subtracted",
        samples=active.samples, sample_rate_hz=active.rate_hz, idle_power_w=idle.power_w,
        active_power_w=active.power_w, duration_s=active.duration_s, sign_convention=active.sign_convention,
        charging=charging, warning="the phone was charging: this energy figure is meaningless" if charging else None)
    device = dataclasses.replace(record.device, id=f"adb:{serial}", transport=transport.name, profile=as_profile)
    push = {"remote": remote, "files_pushed": pushed, "seconds": round(time.perf_counter() - t0, 2)}
    return dataclasses.replace(record, device=device, energy=energy, push=push)
