"""Every way a user (or a phone, or a forged file) used to get a traceback from the CLI now
gets one line on stderr and exit status 2, with the flag or field named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from edgelm.devices.android import HASHES_FILE, DeviceFacts, profile_draft, push_folder
from edgelm.devices.meters import FuelGaugeSampler, PowerSupplyMeter
from edgelm.devices.transport import LocalTransport
from edgelm.errors import DeviceError
from edgelm.export import ExportConfig, export
from tests.bench.records import make_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "int4"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


def _cli(*args: str | bytes, **kw) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "edgelm.cli", *args], stderr=subprocess.PIPE, timeout=180,
                          cwd=ROOT, **kw)


def _one_line_exit_2(proc: subprocess.CompletedProcess[bytes], word: str) -> None:
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-1500:]}"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err[-1500:]
    assert word in err, err


GEN = ("generate", "-p", "hi", "--threads", "1")


@pytest.mark.parametrize("flags, word", [
    (["--max-new-tokens", str(10**13)], "--max-new-tokens"),
    (["--threads", str(10**11)], "--threads"),
    (["--top-k", str(2**64)], "--top-k"),
    (["--temperature", "nan"], "--temperature"),
    (["--context", str(10**12)], "--context"),
    (["--repetition-penalty", "1e-300"], "repetition_penalty"),
    (["--seed", "-1"], "--seed"),
    (["--samplers", "top_k;warp"], "unknown sampler 'warp'"),
    (["--samplers", "top_k", "--top-p", "0.9"], "top_p (step 'top_p')"),
    (["--typical-p", "0"], "typical_p"),
    (["--dry-base", "0.5"], "dry_base"),
    (["--dry-penalty-last-n", "-2"], "--dry-penalty-last-n"),
    (["--xtc-probability", "inf"], "--xtc-probability"),
])
def test_absurd_flags_are_one_line(folder: Path, flags: list[str], word: str) -> None:
    args = list(GEN) + [str(folder)] + flags
    if "--threads" in flags:
        args = ["generate", "-p", "hi", str(folder), *flags]
    _one_line_exit_2(_cli(*args), word)


def test_temperature_below_float32_runs_greedy(folder: Path) -> None:
    greedy = _cli(*GEN, str(folder), "--max-new-tokens", "6")
    tiny = _cli(*GEN, str(folder), "--max-new-tokens", "6", "--temperature", "1e-50", "--seed", "3")
    assert greedy.returncode == tiny.returncode == 0, tiny.stderr
    assert greedy.stdout == tiny.stdout


def test_non_utf8_prompt_is_one_line(folder: Path) -> None:
    proc = subprocess.run([sys.executable.encode(), b"-m", b"edgelm.cli", b"generate", str(folder).encode(),
                           b"-p", b"caf\xe9 \xff"], capture_output=True, timeout=120, cwd=ROOT)
    _one_line_exit_2(proc, "UTF-8")


def test_output_to_a_closed_pipe_is_quiet(folder: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edgelm.cli", *GEN, str(folder), "--max-new-tokens", "200",
                             "--raw"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()  # `| head -c 1`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and "Traceback" not in err, err


@pytest.mark.parametrize("fd", [0, 1])
def test_chat_with_stdin_or_stdout_closed(folder: Path, fd: int) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgelm.cli", "chat", str(folder), "--threads", "1"],
                          capture_output=fd == 0, stderr=subprocess.PIPE if fd == 1 else None, timeout=120, cwd=ROOT,
                          preexec_fn=lambda: os.close(fd))
    _one_line_exit_2(proc, "standard input" if fd == 0 else "standard output")


def test_plan_sweep_out_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    _one_line_exit_2(_cli("plan", "--device", "pixel-8-pro", "--params", "350M", "--tokens-per-day", "1000",
                          "--sweep", "--out", str(tmp_path / "file" / "figs")), "cannot write the figures")


@pytest.mark.parametrize("forge", ["zero energy", "zero speed", "wrong type"])
def test_profile_calibrate_on_forged_records(tmp_path: Path, forge: str) -> None:
    d = make_record(joules=0.0 if forge == "zero energy" else 0.01, id=1).to_dict()
    if forge == "zero speed":
        d["decode_tokens_per_s"] = 0
    if forge == "wrong type":
        d["settings"] = "fast"
    store = tmp_path / "r.jsonl"
    store.write_text(json.dumps(d) + "\n")
    proc = _cli("profile", "mobilellm-125m", "--device", "pixel-8-pro", "--calibrate", "--store", str(store))
    _one_line_exit_2(proc, "no stored run with measured energy" if forge == "zero energy" else "line 1")


def test_bench_refuses_a_misshapen_store_before_benchmarking(folder: Path, tmp_path: Path) -> None:
    store = tmp_path / "r.jsonl"
    store.write_text("{}\n")
    for args in (["bench", str(folder)], ["bench", "--history"], ["bench", "--compare", "1", "2"]):
        _one_line_exit_2(_cli(*args, "--store", str(store)), "time_utc")


def test_battery_gauge_that_prints_abc(tmp_path: Path) -> None:
    d = tmp_path / "class" / "power_supply" / "battery"
    d.mkdir(parents=True)
    for name, text in (("type", "Battery"), ("status", "Discharging"), ("current_now", "500000"),
                       ("voltage_now", "4000000")):
        (d / name).write_text(text + "\n")
    meter = PowerSupplyMeter(root=tmp_path / "class" / "power_supply", rate_hz=200)
    meter.start()
    (d / "current_now").write_text("abc\n")
    import time

    time.sleep(0.05)
    with pytest.raises(DeviceError, match="no energy was measured"):
        meter.stop()
    gauge = FuelGaugeSampler(lambda: (10**12, 4_000_000), 100.0)  # 1,000,000 A: not a phone
    gauge.start()
    time.sleep(0.03)
    with pytest.raises(DeviceError, match="implausible"):
        gauge.stop()


def test_non_utf8_device_output_and_a_hash_file_of_the_wrong_type(folder: Path, tmp_path: Path) -> None:
    t = LocalTransport(tmp_path / "phone")
    (tmp_path / "phone").mkdir()
    r = t.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\xff\\xfe ok')"])
    assert r.returncode == 0 and "ok" in r.stdout
    remote = "/data/m"
    t.run(["mkdir", "-p", remote])
    for wrong in ("[1, 2]", '"text"', "{" * 5000, "\xff"):
        t.local_path(f"{remote}/{HASHES_FILE}").write_text(wrong, errors="surrogateescape")
        pushed = push_folder(t, folder, remote)
        assert "model.onnx" in pushed  # nothing trusted: everything pushed again


@pytest.mark.parametrize("serial", ['a"b', "x\ny = 1", "q\\u0000", "'; rm -rf /", "\u00e9\t\x01"])
def test_draft_profile_is_valid_toml_whatever_the_serial(serial: str) -> None:
    facts = DeviceFacts(serial, {"ro.product.model": 'Pixel "8"\n[x]', "ro.product.manufacturer": "G"},
                        {"MemTotal": 8 << 30}, {}, {}, [2_000_000] * 8)
    data = tomllib.loads(profile_draft(facts))
    assert data["name"] == 'G Pixel "8"\n[x]'
    assert serial in data["sources"]["cpu.cores"]


@pytest.mark.parametrize("printed, word", [("{}", "time_utc: missing"), ("[]", "JSON object"),
                                           ("not json", "no JSON result")])
def test_a_phone_whose_bench_output_is_not_a_record(folder: Path, tmp_path: Path, printed: str, word: str) -> None:
    from edgelm.bench.remote import remote_bench

    root = tmp_path / "phone"
    supply = root / "sys/class/power_supply/battery"
    supply.mkdir(parents=True)
    for name, text in (("status", "Discharging"), ("current_now", "-400000"), ("voltage_now", "3900000")):
        (supply / name).write_text(text + "\n")
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\necho '{printed}'\n")
    fake.chmod(0o755)
    with pytest.raises(DeviceError, match=word):
        remote_bench(LocalTransport(root), "p", folder, python=str(fake), idle_s=0.05, runs=1, warmup=0,
                     new_tokens=2, prompt_tokens=2)


def test_push_refuses_a_folder_with_a_link_out(folder: Path, tmp_path: Path) -> None:
    import shutil

    local = tmp_path / "m"
    shutil.copytree(folder, local)
    (tmp_path / "secret").write_text("private key")
    (local / "extra.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(DeviceError, match="symbolic link"):
        push_folder(LocalTransport(tmp_path / "phone"), local, "/data/m")
