"""The sampling kernels against transformers' logits processors (a reference nobody
here wrote), with property tests over random logits, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgelm.errors import SamplingError
from edgelm.sampling import Sampler, SamplingParams, process, sample

torch = pytest.importorskip("torch")
lp = pytest.importorskip("transformers.generation.logits_process")

# Logits drawn from a small set of values make ties common.
_values = st.sampled_from([-5.0, -2.5, -1.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.25, 4.0])
logit_arrays = st.one_of(
    arrays(np.float32, st.integers(1, 300), elements=_values),
    arrays(np.float32, st.integers(1, 300), elements=st.floats(-20, 20, width=32)),
)
SETTINGS = settings(max_examples=400, deadline=None)


def _hf(logits: np.ndarray, processors: list, prev: np.ndarray | None = None) -> np.ndarray:
    scores = torch.tensor(logits, dtype=torch.float32)[None]
    ids = torch.tensor(prev if prev is not None else np.zeros(0, np.int64), dtype=torch.long)[None]
    for proc in processors:
        scores = proc(ids, scores)
    return scores[0].numpy()


def _kept(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x)


@SETTINGS
@given(logit_arrays, st.integers(1, 400))
def test_top_k_keeps_the_same_set(logits: np.ndarray, k: int) -> None:
    ours = process(logits, SamplingParams(top_k=k))
    ref = _hf(logits, [lp.TopKLogitsWarper(k)])
    np.testing.assert_array_equal(_kept(ours), _kept(ref))
    assert _kept(ours).sum() >= min(k, logits.size)


def _top_p_boundary_is_clear(logits: np.ndarray, p: float) -> bool:
    """True unless the cut sits within float rounding of 1 - p (torch sums in float32)."""
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    cum = np.cumsum(np.sort(probs, kind="stable"))
    return bool(np.all(np.abs(cum - (1 - p)) > 1e-5))


@SETTINGS
@given(logit_arrays, st.floats(0.01, 1.0))
def test_top_p_keeps_the_same_set(logits: np.ndarray, p: float) -> None:
    assume(_top_p_boundary_is_clear(logits, p))
    ours = process(logits, SamplingParams(top_p=p))
    ref = _hf(logits, [lp.TopPLogitsWarper(p)])
    _assert_same_kept(logits, ours, ref)


def _assert_same_kept(logits: np.ndarray, ours: np.ndarray, ref: np.ndarray) -> None:
    """Same kept set; where equal logits straddle the top-p cut, torch.sort (not stable)
    keeps arbitrary ones of them, so there the kept values must agree as a multiset."""
    if np.array_equal(_kept(ours), _kept(ref)):
        return
    np.testing.assert_array_equal(np.sort(logits[_kept(ours)]), np.sort(logits[_kept(ref)]))


@SETTINGS
@given(logit_arrays, st.floats(0.01, 0.99))
def test_top_p_set_is_minimal_with_mass_at_least_p(logits: np.ndarray, p: float) -> None:
    assume(_top_p_boundary_is_clear(logits, p))
    kept = _kept(process(logits, SamplingParams(top_p=p)))
    probs = np.exp(logits.astype(np.float64) - logits.max())
    probs /= probs.sum()
    assert probs[kept].sum() >= p - 1e-9
    # Dropping the smallest kept token would fall below p (or leave nothing).
    if kept.sum() > 1:
        assert probs[kept].sum() - probs[kept].min() < p + 1e-9


@SETTINGS
@given(logit_arrays, st.floats(0.0, 1.0))
def test_min_p_keeps_the_same_set(logits: np.ndarray, min_p: float) -> None:
    ratio = np.exp(logits.astype(np.float64) - logits.max())
    assume(np.all(np.abs(ratio - min_p) > 1e-5))
    ours = process(logits, SamplingParams(min_p=min_p))
    ref = _hf(logits, [lp.MinPLogitsWarper(min_p)]) if min_p > 0 else logits
    np.testing.assert_array_equal(_kept(ours), _kept(ref))


@SETTINGS
@given(logit_arrays, st.floats(0.05, 5.0), st.floats(0.05, 5.0), st.data())
def test_repetition_penalty_and_temperature_equal_transformers(logits: np.ndarray, penalty: float, t: float,
                                                              data: st.DataObject) -> None:
    prev = np.array(data.draw(st.lists(st.integers(0, logits.size - 1), max_size=40)), np.int64)
    ours = process(logits, SamplingParams(repetition_penalty=penalty, temperature=t), prev)
    ref = _hf(logits, [lp.RepetitionPenaltyLogitsProcessor(penalty), lp.TemperatureLogitsWarper(t)], prev)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)


@SETTINGS
@given(logit_arrays, st.floats(-2, 2), st.floats(-2, 2), st.data())
def test_frequency_and_presence_penalties(logits: np.ndarray, freq: float, pres: float, data: st.DataObject) -> None:
    prev = np.array(data.draw(st.lists(st.integers(0, logits.size - 1), max_size=40)), np.int64)
    ours = process(logits, SamplingParams(frequency_penalty=freq, presence_penalty=pres), prev)
    counts = np.bincount(prev, minlength=logits.size)
    ref = logits.astype(np.float64) - counts * freq - (counts > 0) * pres
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@SETTINGS
@given(logit_arrays, st.integers(1, 60), st.floats(0.05, 1.0), st.floats(0.0, 0.5), st.floats(0.3, 2.0),
       st.floats(0.5, 2.0), st.data())
def test_whole_pipeline_equals_transformers(logits: np.ndarray, k: int, p: float, min_p: float, t: float,
                                            penalty: float, data: st.DataObject) -> None:
    prev = np.array(data.draw(st.lists(st.integers(0, logits.size - 1), max_size=20)), np.int64)
    params = SamplingParams(temperature=t, top_k=k, top_p=p, min_p=min_p, repetition_penalty=penalty)
    procs = [lp.RepetitionPenaltyLogitsProcessor(penalty), lp.TemperatureLogitsWarper(t), lp.TopKLogitsWarper(k)]
    before_p = _hf(logits, procs, prev)
    assume(_top_p_boundary_is_clear(before_p[np.isfinite(before_p)], p))
    procs.append(lp.TopPLogitsWarper(p))
    before_min_p = _hf(logits, procs, prev)
    fin = before_min_p[np.isfinite(before_min_p)]
    assume(np.all(np.abs(np.exp(fin.astype(np.float64) - fin.max()) - min_p) > 1e-5))
    if min_p > 0:
        procs.append(lp.MinPLogitsWarper(min_p))
    ref = _hf(logits, procs, prev)
    ours = process(logits, params, prev)
    _assert_same_kept(before_p, ours, ref)
    np.testing.assert_allclose(np.sort(ours[_kept(ours)]), np.sort(ref[_kept(ref)]), rtol=1e-6)


@SETTINGS
@given(logit_arrays, st.integers(0, 2**63))
def test_k1_and_greedy_are_argmax(logits: np.ndarray, seed: int) -> None:
    # top-k keeps every logit tied with the k-th (transformers' rule), so k=1 draws one
    # of the tied maxima; greedy is exactly np.argmax (the first of them).
    assert logits[sample(logits, SamplingParams(top_k=1), seed=seed)] == logits.max()
    assert sample(logits, SamplingParams(temperature=0.0)) == int(np.argmax(logits))


@SETTINGS
@given(logit_arrays, st.integers(0, 2**63), st.integers(1, 50), st.floats(0.1, 1.0))
def test_draw_stays_in_the_kept_set(logits: np.ndarray, seed: int, k: int, p: float) -> None:
    params = SamplingParams(temperature=0.8, top_k=k, top_p=p)
    kept = _kept(process(logits, params))
    assert kept[sample(logits, params, seed=seed)]


def test_penalty_of_one_changes_nothing() -> None:
    x = np.random.default_rng(0).standard_normal(500).astype(np.float32)
    np.testing.assert_array_equal(process(x, SamplingParams(repetition_penalty=1.0), np.arange(100)), x)


def _chi2_critical(df: int, z: float = 3.09) -> float:
    # Wilson-Hilferty approximation of the chi-square quantile (z = 3.09: p = 0.001).
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("params", [SamplingParams(temperature=1.0), SamplingParams(temperature=0.7, top_k=8),
                                    SamplingParams(temperature=1.3, top_p=0.8, min_p=0.02)])
def test_draw_frequencies_pass_chi_square(params: SamplingParams) -> None:
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(20).astype(np.float32) * 1.5
    processed = process(logits, params).astype(np.float64)
    probs = np.exp(processed - processed.max())
    probs /= probs.sum()
    sampler = Sampler(20, params)
    sampler.reseed(12345)
    n = 40000
    counts = np.bincount([sampler.sample(logits) for _ in range(n)], minlength=20)
    support = probs > 0
    assert counts[~support].sum() == 0
    expected = probs[support] * n
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    assert chi2 < _chi2_critical(int(support.sum()) - 1), chi2


def test_same_seed_same_tokens() -> None:
    logits = np.random.default_rng(1).standard_normal(49152).astype(np.float32)
    params = SamplingParams(temperature=1.0, top_p=0.95)
    a = [sample(logits, params, seed=s) for s in range(20)]
    b = [sample(logits, params, seed=s) for s in range(20)]
    assert a == b and len(set(a)) > 5


@pytest.mark.parametrize("vocab", [1, 2, 262144])
def test_vocabulary_sizes(vocab: int) -> None:
    logits = np.random.default_rng(vocab).standard_normal(vocab).astype(np.float32)
    params = SamplingParams(temperature=0.9, top_k=40, top_p=0.9, min_p=0.01, repetition_penalty=1.1)
    tok = sample(logits, params, previous_tokens=[0], seed=1)
    assert 0 <= tok < vocab


def test_nan_and_all_inf_are_clear_errors() -> None:
    x = np.zeros(10, np.float32)
    x[3] = np.nan
    with pytest.raises(SamplingError, match="NaN"):
        sample(x, SamplingParams())
    with pytest.raises(SamplingError, match="-inf"):
        sample(np.full(10, -np.inf, np.float32), SamplingParams())


@pytest.mark.parametrize("kwargs,needle", [
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"), ({"min_p": 2}, "min_p"), ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"temperature": float("nan")}, "temperature"), ({"seed": -3}, "seed"),
])
def test_parameter_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(SamplingError, match=needle):
        SamplingParams(**kwargs)


def test_bad_arrays_are_rejected() -> None:
    with pytest.raises(SamplingError, match="1-D"):
        process(np.zeros((2, 3), np.float32), SamplingParams())
    with pytest.raises(SamplingError, match="previous token"):
        process(np.zeros(5, np.float32), SamplingParams(), previous_tokens=[7])


_big_logits = st.one_of(
    arrays(np.float32, st.integers(64, 5000), elements=_values),
    arrays(np.float32, st.integers(64, 5000), elements=st.floats(-20, 20, width=32)),
)
_shared = Sampler(5000)  # one sampler across examples: its scratch must come back clean


@SETTINGS
@given(_big_logits, st.integers(1, 80), st.floats(0.05, 1.0), st.floats(0.3, 2.0), st.floats(0.5, 2.0),
       st.floats(-1, 1), st.data())
def test_sample_path_candidates_equal_processed_logits(logits: np.ndarray, k: int, p: float, t: float, rep: float,
                                                       freq: float, data: st.DataObject) -> None:
    """sample() reads the logits in place and copies only the penalised blocks; the tokens it
    draws from (and their values) must be exactly the finite entries process() returns."""
    prev = np.array(data.draw(st.lists(st.integers(0, logits.size - 1), max_size=60)), np.int64)
    params = SamplingParams(temperature=t, top_k=k, top_p=p, repetition_penalty=rep, frequency_penalty=freq)
    ref = process(logits, params, previous_tokens=prev)
    s = _shared if logits.size == _shared.vocab_size else Sampler(logits.size)
    out = s._process(logits, prev, params, fill=False)
    kept = np.flatnonzero(np.isfinite(ref))
    if s._n_cand == 0:  # no top-k ran: the draw reads the whole processed array
        np.testing.assert_array_equal(out, ref)
    else:
        cand = s._cand[:s._n_cand]
        np.testing.assert_array_equal(np.sort(cand["index"]), kept)
        np.testing.assert_array_equal(cand["value"][np.argsort(cand["index"])], ref[kept])
    nb = (logits.size + 63) // 64
    assert not s._bmax[nb:].any()  # the per-block flags are all back to zero
