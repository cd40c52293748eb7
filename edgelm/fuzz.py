"""Fuzzing the sampling kernels with hostile logits and parameters.

One seeded generator of logit vectors (every float32 special value: NaN, +/-inf, the
largest and smallest normals, subnormals, signed zeros, long runs of ties) and of
sampling parameters at and past their edges, and one checker that holds a
:class:`~edgelm.sampling.Sampler` to what it promises for each vector:

- it returns or raises :class:`~edgelm.errors.SamplingError`, nothing else;
- ``process()`` never outputs NaN or +inf, keeps at least one token, and the drawn token
  is one it keeps (its processed logit is finite);
- greedy returns numpy's ``argmax`` of the penalised logits;
- NaN anywhere, or every logit -inf, is an error, not a token.

``tests/test_sampling_fuzz.py`` runs a bounded share in a child process (a crash in the
kernel is a signal, which the test sees); ``benchmarks/fuzz_sampling.py`` runs the long
version. A crash cannot be caught in-process, so :func:`fuzz` is meant to run in a child.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SamplingError
from .sampling import FLOAT32_TINY, STEPS, Sampler, SamplingParams

__all__ = ["FuzzReport", "fuzz", "random_case", "check_case"]

_F32 = np.finfo(np.float32)
#: Values that break float code: each appears in the vectors, alone and in runs.
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, _F32.max, -_F32.max, _F32.tiny, -_F32.tiny,
                     _F32.smallest_subnormal, -_F32.smallest_subnormal, 1e30, -1e30, 88.0, -88.0, 1.0],
                    dtype=np.float32)
_VOCABS = (1, 2, 3, 7, 63, 64, 65, 127, 128, 129, 255, 256, 1000, 4096, 49152, 262144)


@dataclass
class FuzzReport:
    """What a fuzz run saw. ``wrong`` lists the first few failures (case seeds and why)."""

    vectors: int = 0
    errors: int = 0  # SamplingError raised, as it should be for NaN / all -inf / overflow
    rejected: int = 0  # parameters SamplingParams refused
    wrong_draws: int = 0
    wrong: list[str] = field(default_factory=list)

    def fail(self, seed: int, why: str) -> None:
        self.wrong_draws += 1
        if len(self.wrong) < 20:
            self.wrong.append(f"case {seed}: {why}")


def _logits(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.choice(_VOCABS)) if rng.random() < 0.5 else int(rng.integers(1, 2049))
    kind = rng.integers(0, 6)
    if kind == 0:
        x = rng.normal(0, rng.choice([0.01, 1.0, 10.0, 1e4]), n)
    elif kind == 1:  # ties: few distinct values
        x = rng.choice(rng.normal(0, 3, 4), n)
    elif kind == 2:  # mostly -inf
        x = np.full(n, -np.inf)
        x[rng.integers(0, n, rng.integers(0, 4))] = rng.normal(0, 3)
    elif kind == 3:  # extremes only
        x = rng.choice(SPECIALS[1:], n)
    else:
        x = rng.normal(0, 5, n)
    x = x.astype(np.float32)
    n_special = int(rng.integers(0, 4))
    if n_special and rng.random() < 0.5:
        x[rng.integers(0, n, n_special)] = rng.choice(SPECIALS, n_special)
    return x


def _choose(rng: np.random.Generator, *values: float) -> float:
    return float(values[int(rng.integers(0, len(values)))])


def random_case(seed: int) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Logits, sampling parameters (keyword arguments of :class:`SamplingParams`, which may
    reject them) and a history for case ``seed``: the same on every machine."""
    rng = np.random.default_rng(seed)
    x = _logits(rng)
    n = x.size
    temperature = _choose(rng, 0.0, 1.0, 0.7, 1e-50, 1e-40, float(FLOAT32_TINY), 1e-30, 1e-6, 100.0, 1e30)
    params: dict[str, Any] = dict(
        temperature=temperature,
        top_k=int(_choose(rng, 0, 1, 2, 5, 50, n - 1, n, n + 1, 10**9)),
        top_p=_choose(rng, 1.0, 0.9, 0.5, 1e-9, 0.999999, 5e-324),
        min_p=_choose(rng, 0.0, 0.05, 0.5, 1.0, 1e-300),
        repetition_penalty=_choose(rng, 1.0, 1.0, 1.3, 0.5, 1e-30, 1e30) if rng.random() < 0.9
        else _choose(rng, 1e-300, 1e-38, float(FLOAT32_TINY), 3.4e38, 1e300),
        frequency_penalty=_choose(rng, 0.0, 0.5, -1e308, 1e308, -2.0),
        presence_penalty=_choose(rng, 0.0, 0.3, -1e308, 1e308),
        seed=int(rng.integers(0, 2**63)),
    ) if rng.random() < 0.9 else {"temperature": 0.0}
    long_history = rng.random() < 0.03
    prev = rng.integers(0, n, int(rng.integers(1025, 1500) if long_history else rng.integers(0, 9)), dtype=np.int64)
    if len(params) > 1 and rng.random() < 0.4:  # llama.cpp's chain, its steps in a random order
        steps = [str(s) for s in rng.permutation(list(STEPS))[:int(rng.integers(1, len(STEPS) + 1))]]
        params.update(
            samplers=tuple(steps),
            min_keep=int(_choose(rng, 0, 1, 3, n, n + 1, 10**9)),
            penalty_last_n=rng.choice(np.array([None, 0, 1, 3, 64, 10**9], dtype=object)),
            typical_p=_choose(rng, 1.0, 0.9, 0.2, 1e-9),
            top_n_sigma=_choose(rng, 0.0, 1.0, 1e-9, 3.0, 1e30),
            # XTC at 0 or 1 only: a coin between would make process() and sample() differ
            xtc_probability=_choose(rng, 0.0, 1.0),
            xtc_threshold=_choose(rng, 0.0, 0.1, 0.5, 0.9),
            dry_multiplier=_choose(rng, 0.0, 0.8, 1e30, 3.4e38),
            dry_base=_choose(rng, 1.0, 1.75, 1.000001, 1e10, 3.4e38),
            dry_allowed_length=int(_choose(rng, 0, 1, 2, 10**9)),
            dry_penalty_last_n=rng.choice(np.array([None, 0, 2, 50], dtype=object)),
            dry_sequence_breakers=tuple(tuple(int(t) for t in rng.integers(0, n, int(rng.integers(1, 4))))
                                        for _ in range(int(rng.integers(0, 4)))),
        )
        # A parameter whose step is left out would be refused: switch those off.
        for step, name, off in (("top_k", "top_k", 0), ("top_p", "top_p", 1.0), ("min_p", "min_p", 0.0),
                                ("typical", "typical_p", 1.0), ("top_n_sigma", "top_n_sigma", 0.0),
                                ("xtc", "xtc_probability", 0.0), ("dry", "dry_multiplier", 0.0),
                                ("temperature", "temperature", 0.0 if params["temperature"] == 0.0 else 1.0)):
            if step not in steps:
                params[name] = off
        if "penalties" not in steps:
            params.update(repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0)
    return x, params, prev


def _penalised(x: np.ndarray, p: SamplingParams, prev: np.ndarray) -> np.ndarray:
    """The penalties alone, in the kernel's arithmetic: the repetition penalty in float32,
    the frequency and presence penalties in float64 rounded once to float32."""
    with np.errstate(all="ignore"):
        out = x.copy()
        rp = np.float32(p.repetition_penalty)
        for t in set(prev.tolist()):
            s = x[t]
            out[t] = s * rp if s < 0 else s / rp
        counts = np.bincount(prev, minlength=x.size)
        for t in set(prev.tolist()):
            out[t] = np.float32(np.float64(out[t]) - counts[t] * p.frequency_penalty - p.presence_penalty)
        return out


def _must_not_raise(x: np.ndarray, p: SamplingParams, prev: np.ndarray) -> bool:
    if not np.isfinite(x).all():
        return False
    pen = _penalised(x, p, prev)
    if not np.isfinite(pen).all():
        return False
    with np.errstate(all="ignore"):
        return p.greedy or bool(np.isfinite(np.float32(pen.max()) / np.float32(p.temperature)))


def check_case(sampler: Sampler, x: np.ndarray, kwargs: dict[str, Any], prev: np.ndarray, seed: int,
               report: FuzzReport) -> None:
    """Run one case through ``sampler`` (sized for ``x``) and record what was wrong."""
    report.vectors += 1
    try:
        p = SamplingParams(**kwargs)  # type: ignore[arg-type]
    except SamplingError:
        report.rejected += 1
        return
    try:
        out = sampler.process(x, prev, p).copy()
    except SamplingError:
        out = None
    try:
        tok = sampler.sample(x, prev, p)
    except SamplingError:
        tok = None
    if (out is None) != (tok is None):
        report.fail(seed, f"process {'raised' if out is None else 'returned'} but sample "
                          f"{'raised' if tok is None else 'returned'}")
        return
    if out is None:
        report.errors += 1
        if p.chain is None and _must_not_raise(x, p, prev):
            report.fail(seed, "raised on finite logits whose penalised and scaled values stay finite")
        return
    assert tok is not None
    if np.isnan(out).any() or np.isposinf(out).any():
        report.fail(seed, "process() output holds NaN or +inf")
    if not np.isfinite(out).any():
        report.fail(seed, "process() kept no token but did not raise")
    if not 0 <= tok < x.size or not math.isfinite(float(out[tok])):
        report.fail(seed, f"drew token {tok}, which process() filtered")
    if np.isnan(x).any():
        report.fail(seed, "NaN logits gave a token")
    if p.greedy and p.chain is not None:  # the chain's greedy choice: the most likely survivor
        if tok != int(np.argmax(out)):
            report.fail(seed, f"greedy chain drew {tok}, the survivors' argmax is {int(np.argmax(out))}")
    elif p.greedy:
        pen = _penalised(x, p, prev)
        if np.isfinite(pen).all() and tok != int(np.argmax(pen)):
            report.fail(seed, f"greedy drew {tok}, argmax is {int(np.argmax(pen))}")


def fuzz(vectors: int, start: int = 0) -> FuzzReport:
    """Cases ``start .. start + vectors - 1``; one sampler per vocabulary size is reused,
    as a decode loop reuses its own, so state left behind by a bad case is caught too."""
    report = FuzzReport()
    samplers: dict[int, Sampler] = {}
    for seed in range(start, start + vectors):
        x, p, prev = random_case(seed)
        sampler = samplers.get(x.size)
        if sampler is None:
            sampler = samplers[x.size] = Sampler(x.size)
        check_case(sampler, x, p, prev, seed, report)
    return report
