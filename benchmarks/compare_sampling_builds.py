"""Two builds of the sampling kernel side by side in one process: the default
(transformers) pipeline and the same under a grammar mask, on SmolLM2's 49,152-entry
vocabulary, the builds' calls alternated one by one. Prints each build's median and the
ratio B/A, with its range over rounds.

Run: python benchmarks/compare_sampling_builds.py A/_sampling.so B/_sampling.so
(A: e.g. a worktree of an earlier commit built with setup.py build_ext --inplace)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np

VOCAB = 49152
_CAND = np.dtype([("value", np.float32), ("index", np.int32)])


def load(path: Path, name: str) -> ModuleType:
    """The extension at ``path`` as module ``name``._sampling (each build its own package
    name, so both load in one process)."""
    pkg = ModuleType(name)
    pkg.__path__ = [str(path.parent)]
    sys.modules[name] = pkg
    spec = importlib.util.spec_from_file_location(f"{name}._sampling", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def core(mod: ModuleType, mask: np.ndarray | None):  # type: ignore[no-untyped-def]
    n = VOCAB
    bufs = [np.empty(n + 256, np.float32), np.zeros(n, np.int32), np.empty(n, np.float32), np.empty(n, np.float32),
            np.empty(n, _CAND), np.zeros(2 * ((n + 63) // 64), np.float32)]
    try:
        c = mod.SamplerCore(*bufs, np.empty(n, _CAND))  # builds with the chain's second list
    except TypeError:
        c = mod.SamplerCore(*bufs)
    c.configure(0.8, 50, 0.9, 0.05, 1.1, 0.0, 0.0)
    c.reseed(0)
    if mask is not None:
        c.set_mask(mask, np.empty(n, np.float32))
    return c, bufs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    a, b = load(args.a, "build_a"), load(args.b, "build_b")
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal(VOCAB) * 3).astype(np.float32)
    prev = rng.integers(0, VOCAB, 128).astype(np.int64)
    mask = np.full((VOCAB + 31) // 32, -1, np.int32)
    mask[rng.integers(0, mask.size, mask.size // 3)] = 0
    mask[rng.integers(0, mask.size, mask.size // 3)] = rng.integers(-2**31, 2**31 - 1, mask.size // 3)
    print(f"A = {args.a}\nB = {args.b}\nvocabulary {VOCAB}; rep 1.1 + temp 0.8 + top-k 50 + top-p 0.9 + min-p 0.05 "
          f"+ draw; {args.rounds} rounds of {args.calls} alternated calls")
    for label, m in (("default pipeline", None), ("under a grammar mask", mask)):
        ca, keep_a = core(a, m)
        cb, keep_b = core(b, m)
        assert [ca.sample(logits, prev) for _ in range(50)] == [cb.sample(logits, prev) for _ in range(50)], \
            "the builds draw different tokens"
        ratios, ta_all, tb_all = [], [], []
        for _ in range(args.rounds):
            ta, tb = [], []
            for _ in range(args.calls):
                t = time.perf_counter()
                ca.sample(logits, prev)
                ta.append(time.perf_counter() - t)
                t = time.perf_counter()
                cb.sample(logits, prev)
                tb.append(time.perf_counter() - t)
            ma, mb = float(np.median(ta) * 1e6), float(np.median(tb) * 1e6)
            ratios.append(mb / ma)
            ta_all.append(ma)
            tb_all.append(mb)
        print(f"  {label:22} A {np.median(ta_all):6.1f} us  B {np.median(tb_all):6.1f} us  "
              f"B/A {np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}); same tokens")
        del keep_a, keep_b


if __name__ == "__main__":
    main()
