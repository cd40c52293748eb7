"""Hostile inputs to the sampling kernels: every float32 special value, vocabularies from 1
to 262,144, parameters at and past their edges. A crash in the kernel kills the process,
so the seeded fuzz runs in a child and the test checks it ended without a signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgelm.errors import SamplingError
from edgelm.fuzz import FuzzReport, check_case
from edgelm.sampling import FLOAT32_TINY, Sampler, SamplingParams, process, sample

CHILD = ("import json, sys; from edgelm.fuzz import fuzz; r = fuzz(int(sys.argv[1])); "
         "print(json.dumps({'vectors': r.vectors, 'errors': r.errors, 'wrong': r.wrong_draws, 'examples': r.wrong}))")


#: Cases the child runs: 25,000 natively (~10 s); the emulated aarch64 lane sets fewer.
VECTORS = int(os.environ.get("EDGELM_FUZZ_VECTORS", "25000"))


def test_seeded_fuzz_in_a_child_has_no_crash_and_no_wrong_draw() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(VECTORS)], capture_output=True, text=True, timeout=900)
    assert proc.returncode >= 0, f"the kernel crashed the child (signal {-proc.returncode})"
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["vectors"] == VECTORS
    assert r["wrong"] == 0, r["examples"]
    assert 0 < r["errors"] < r["vectors"]  # both paths were exercised


_any_f32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@settings(max_examples=300, deadline=None)
@given(arrays(np.float32, st.integers(1, 200), elements=_any_f32),
       st.sampled_from([0.0, 1e-45, 1e-38, 0.5, 1.0, 3.0]), st.integers(0, 210),
       st.sampled_from([1.0, 0.9, 0.3, 1e-12]), st.sampled_from([0.0, 0.1, 1.0]),
       st.sampled_from([1.0, 2.0, 0.5, float(FLOAT32_TINY), 3.4e38]), st.sampled_from([0.0, 1.5, -1e308, 1e308]),
       st.lists(st.integers(0, 199), max_size=6))
def test_any_float32_vector_gives_a_kept_token_or_a_clear_error(x, t, k, top_p, min_p, rp, fp, prev) -> None:
    prev_a = np.array([i for i in prev if i < x.size], np.int64)
    report = FuzzReport()
    check_case(Sampler(x.size), x, dict(temperature=t, top_k=k, top_p=top_p, min_p=min_p, repetition_penalty=rp,
                                        frequency_penalty=fp, seed=1), prev_a, 0, report)
    assert report.wrong_draws == 0, report.wrong


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 4097, 262144])
def test_vocabulary_sizes_at_block_edges(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(0, 4, n).astype(np.float32)
    for p in (SamplingParams(top_k=5, top_p=0.5, seed=1), SamplingParams(top_p=0.3, min_p=0.1, seed=2),
              SamplingParams(temperature=0.0, repetition_penalty=1.5)):
        tok = sample(x, p, previous_tokens=[0])
        assert np.isfinite(process(x, p, previous_tokens=[0])[tok])


def test_temperature_below_float32_is_greedy() -> None:
    x = np.array([1.0, 5.0, 2.0, 5.5, -3.0], np.float32)
    for t in (1e-50, 1e-40, 1e-45):
        p = SamplingParams(temperature=t, top_p=0.5, seed=3)
        assert p.greedy
        assert sample(x, p) == 3
        # no division by the temperature: the filters run on the logits as they are
        np.testing.assert_array_equal(process(x, p), process(x, SamplingParams(temperature=0.0, top_p=0.5)))


def test_temperature_that_overflows_the_logits_is_a_clear_error() -> None:
    x = np.array([1.0, 50.0, 2.0], np.float32)
    with pytest.raises(SamplingError, match="temperature"):
        sample(x, SamplingParams(temperature=1e-37, seed=1))


@pytest.mark.parametrize("rp", [1e-300, 0.0, 1e300, float("inf")])
def test_repetition_penalty_outside_float32_is_refused(rp: float) -> None:
    with pytest.raises(SamplingError, match="repetition_penalty"):
        SamplingParams(repetition_penalty=rp)


@pytest.mark.parametrize("p", [SamplingParams(frequency_penalty=-1e308, top_p=0.5, seed=1),
                               SamplingParams(repetition_penalty=float(FLOAT32_TINY), top_p=0.5, seed=1)])
def test_a_penalty_that_overflows_to_inf_is_an_error_not_a_crash(p: SamplingParams) -> None:
    x = np.linspace(-3, 100, 1000).astype(np.float32)  # 100 / 1.2e-38 is past float32
    with pytest.raises(SamplingError, match=r"\+inf"):
        sample(x, p, previous_tokens=[999, 5])
    with pytest.raises(SamplingError, match=r"\+inf"):
        process(x, p, previous_tokens=[999, 5])


def test_infinite_penalty_on_positive_inf_logit_is_nan_error() -> None:
    x = np.array([np.inf, 1.0, 2.0], np.float32)
    with pytest.raises(SamplingError):
        sample(x, SamplingParams(frequency_penalty=1e308, top_p=0.5, seed=1), previous_tokens=[0, 0])


def test_every_logit_minus_inf_is_an_error_after_top_k_too() -> None:
    x = np.full(300, -np.inf, np.float32)
    for p in (SamplingParams(top_k=3, seed=1), SamplingParams(temperature=0.0), SamplingParams(top_p=0.4, seed=1)):
        with pytest.raises(SamplingError, match="-inf"):
            sample(x, p)


def test_top_k_larger_than_the_finite_values_never_draws_minus_inf() -> None:
    x = np.full(500, -np.inf, np.float32)
    x[[7, 300]] = [1.0, 0.5]
    s = Sampler(500, SamplingParams(top_k=50, top_p=0.999999, seed=0))
    assert {s.sample(x) for _ in range(300)} <= {7, 300}


@pytest.mark.parametrize("k", [2**63, -1, 2**64])
def test_top_k_out_of_range_is_refused(k: int) -> None:
    with pytest.raises(SamplingError, match="top_k"):
        SamplingParams(top_k=k)
