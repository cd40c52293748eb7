"""Virtual environments for the peer runtimes, created on first use and reused.

Each peer lives in its own venv under ``$EDGELM_CACHE/peers`` (default
``~/.cache/edgelm/peers``), because their dependencies clash with edgelm's: ONNX
Runtime GenAI's model builder wants transformers 5, and llama-cpp-python compiles
llama.cpp from source (about 12 minutes on 2 cores, once). A venv counts as ready only
when its stamp file, written after a successful install, names the same packages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgelm._io import cache_dir

#: Pinned so that a comparison is repeatable; onnxruntime is the one edgelm runs on.
GENAI_VERSION = "0.18.0"
LLAMA_CPP_VERSION = "0.3.36"
TORCH_VERSION = "2.13.0"  # a CPU wheel on this machine; an unpinned torch pulls GBs of CUDA


@dataclass(frozen=True)
class Peer:
    name: str
    packages: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    note: str = ""

    @property
    def root(self) -> Path:
        return cache_dir() / "peers" / self.name

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    def ready(self) -> bool:
        stamp = self.root / "stamp.json"
        try:
            return json.loads(stamp.read_text())["packages"] == list(self.packages) and self.python.exists()
        except (OSError, ValueError, KeyError):
            return False


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def peers() -> dict[str, Peer]:
    return {
        "genai": Peer("genai", (f"onnxruntime=={onnxruntime_version()}", f"onnxruntime-genai=={GENAI_VERSION}",
                                f"torch=={TORCH_VERSION}", "transformers>=5,<6", "onnx", "onnx-ir",
                                "safetensors", "sentencepiece", "protobuf"),
                      note="ONNX Runtime GenAI and its model builder (transformers 5)"),
        "llamacpp": Peer("llamacpp", (f"llama-cpp-python=={LLAMA_CPP_VERSION}",),
                         env=(("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)),),
                         note="llama.cpp through llama-cpp-python (compiled from source, ~12 min once)"),
    }


def ensure(peer: Peer, log: Path | None = None) -> Path:
    """Create ``peer``'s venv if it is not ready; returns its python. Raises RuntimeError
    with the tail of pip's output when the install fails."""
    if peer.ready():
        return peer.python
    root = peer.root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log = log or root / "install.log"
    t0 = time.perf_counter()
    print(f"[setup] {peer.name}: creating a venv in {root} ({peer.note})", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    env = dict(os.environ, **dict(peer.env))
    with open(log, "w") as fh:
        cmd = [str(peer.python), "-m", "pip", "install", "--no-input", *peer.packages]
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        tail = "".join(log.read_text().splitlines(True)[-15:])
        raise RuntimeError(f"installing {peer.name} failed (full log: {log}):\n{tail}")
    (root / "stamp.json").write_text(json.dumps({"packages": list(peer.packages)}))
    print(f"[setup] {peer.name}: ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return peer.python


if __name__ == "__main__":
    for p in (sys.argv[1:] or list(peers())):
        ensure(peers()[p])
