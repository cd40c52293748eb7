"""The llama.cpp-semantics chain: the expected values of llama.cpp's own tests
(tests/test-sampling.cpp), its sampler-queue checks, and property tests against a plain
model of the chain (tests/llama_chain_ref.py) over random logits, orders and histories.
Runs on the Arm lane too (no torch)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgelm.errors import SamplingError
from edgelm.sampling import LLAMA_CPP_ORDER, Sampler, SamplingParams, breaker_sequences, process

from . import llama_chain_ref as ref

NO_BREAKERS: tuple = ()
#: Hypothesis examples of the property tests: 300 natively; the emulated aarch64 lane sets fewer.
EXAMPLES = int(os.environ.get("EDGELM_CHAIN_EXAMPLES", "300"))


def _probs(probs: list[float], order: list[str], prev: list[int] | None = None, **kw: object) -> np.ndarray:
    """Our distribution after ``order`` on logits log(probs), as llama.cpp's tester builds them."""
    kw.setdefault("dry_sequence_breakers", NO_BREAKERS)
    s = Sampler(len(probs), SamplingParams(samplers=tuple(order), seed=0, **kw))  # type: ignore[arg-type]
    return s.probabilities(np.log(np.array(probs, np.float32)), None if prev is None else np.array(prev, np.int64))


def _expect(got: np.ndarray, tokens: list[int], values: list[float], renormalise: bool = False) -> None:
    """``values`` are llama.cpp's expected probabilities of ``tokens`` (the ids its sorted or
    unsorted list holds, in its order); every other token must be out (probability 0).
    Cases where llama.cpp applies no final dist keep the unnormalised softmax: renormalise."""
    want = np.zeros_like(got)
    vals = np.array(values, np.float64)
    want[tokens] = vals / vals.sum() if renormalise else vals
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


P4 = [0.1, 0.2, 0.3, 0.4]


# -- llama.cpp's tests/test-sampling.cpp, case for case ----------------------------------

@pytest.mark.parametrize("temp, tokens, values", [(1.0, [0, 1, 2, 3], P4), (0.0, [3], [1.0])])
def test_peer_temperature(temp: float, tokens: list[int], values: list[float]) -> None:
    _expect(_probs(P4, ["temperature"], temperature=temp), tokens, values)


@pytest.mark.parametrize("k, tokens, values", [
    (1, [3], [1.0]), (3, [3, 2, 1], [0.44444, 0.33333, 0.22222]), (4, [3, 2, 1, 0], [0.4, 0.3, 0.2, 0.1]),
    (0, [0, 1, 2, 3], P4)])
def test_peer_top_k(k: int, tokens: list[int], values: list[float]) -> None:
    _expect(_probs(P4, ["top_k"], top_k=k), tokens, values)


# llama.cpp's p = 0 keeps one token; ours refuses p = 0 (top_p is in (0, 1]), so the
# smallest p stands in for it: the same one token.
@pytest.mark.parametrize("p, tokens, values", [
    (1e-9, [3], [1.0]), (0.7, [3, 2], [0.571429, 0.428571]), (0.8, [3, 2, 1], [0.44444, 0.33333, 0.22222]),
    (1.0, [0, 1, 2, 3], P4)])
def test_peer_top_p(p: float, tokens: list[int], values: list[float]) -> None:
    _expect(_probs(P4, ["top_p"], top_p=p), tokens, values)


# llama.cpp's 1.05 case is left out: min_p is a probability here, > 1 is refused.
@pytest.mark.parametrize("p, tokens, values", [
    (0.00, [0, 1, 2, 3], P4), (0.24, [0, 1, 2, 3], P4), (0.26, [1, 2, 3], [0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9]),
    (0.49, [1, 2, 3], [0.2 / 0.9, 0.3 / 0.9, 0.4 / 0.9]), (0.51, [2, 3], [0.3 / 0.7, 0.4 / 0.7]),
    (0.74, [2, 3], [0.3 / 0.7, 0.4 / 0.7]), (0.76, [3], [1.0]), (1.00, [3], [1.0])])
def test_peer_min_p(p: float, tokens: list[int], values: list[float]) -> None:
    _expect(_probs(P4, ["min_p"], min_p=p), tokens, values)


# llama.cpp draws XTC's coin with probability 0.99; 1.0 makes each case certain to act
# (the expected values are those of the draw that acts). Its expected values are the
# softmax before the cut (no dist after): compared renormalised.
@pytest.mark.parametrize("threshold, tokens, values", [
    (0.09, [3], [0.1]), (0.19, [2, 3], [0.2, 0.1]), (0.29, [1, 2, 3], [0.3, 0.2, 0.1]),
    (0.39, [0, 1, 2, 3], [0.4, 0.3, 0.2, 0.1])])
def test_peer_xtc(threshold: float, tokens: list[int], values: list[float]) -> None:
    got = _probs([0.4, 0.3, 0.2, 0.1], ["xtc"], xtc_probability=1.0, xtc_threshold=threshold)
    _expect(got, tokens, values, renormalise=True)


@pytest.mark.parametrize("probs, tokens, values", [
    ([0.97, 0.01, 0.01, 0.01], [0], [0.97]), ([0.4, 0.2, 0.2, 0.2], [1, 2, 3], [0.2, 0.2, 0.2])])
def test_peer_typical(probs: list[float], tokens: list[int], values: list[float]) -> None:
    _expect(_probs(probs, ["typical"], typical_p=0.5), tokens, values, renormalise=True)


@pytest.mark.parametrize("prev, values, rep, freq, pres", [
    ([0], [0, 0.25, 0.25, 0.25, 0.25], 50.0, 0.0, 0.0),
    ([0, 1, 2], [0, 0, 0, 0.5, 0.5], 50.0, 0.0, 0.0),
    ([0, 1, 2, 0, 0], [0, 0, 0, 0.5, 0.5], 50.0, 0.0, 0.0),
    ([0], [0.000011, 0.249997, 0.249997, 0.249997, 0.249997], 1.0, 5.0, 5.0),
    ([0, 1, 2], [0.000023, 0.000023, 0.000023, 0.499966, 0.499966], 1.0, 5.0, 5.0),
    ([0, 1, 2, 0, 0], [0.000000, 0.000023, 0.000023, 0.499977, 0.499977], 1.0, 5.0, 5.0)])
def test_peer_penalties(prev: list[int], values: list[float], rep: float, freq: float, pres: float) -> None:
    got = _probs([0.2] * 5, ["penalties"], prev, repetition_penalty=rep, frequency_penalty=freq,
                 presence_penalty=pres, penalty_last_n=len(prev))
    _expect(got, list(range(5)), values)


@pytest.mark.parametrize("probs, prev, values, mult, base, allowed, last_n, breakers", [
    ([0.25] * 4, [0, 1], [0.25] * 4, 1.0, 1.1, 2, 4, ()),
    ([0.25] * 4, [0, 1, 2, 0, 1], [0.296923, 0.296923, 0.109232, 0.296923], 1.0, 1.1, 2, 5, ()),
    ([0.2] * 5, [0, 1, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 2, 6, ((3,),)),
    ([0.2] * 5, [0, 1, 2, 0, 1], [0.241818, 0.241818, 0.032727, 0.241818, 0.241818], 2.0, 1.1, 2, 5, ()),
    ([0.2] * 5, [0, 1, 2, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 4, 7, ())])
def test_peer_dry(probs: list[float], prev: list[int], values: list[float], mult: float, base: float, allowed: int,
                  last_n: int, breakers: tuple) -> None:
    got = _probs(probs, ["dry"], prev, dry_multiplier=mult, dry_base=base, dry_allowed_length=allowed,
                 dry_penalty_last_n=last_n, dry_sequence_breakers=breakers)
    _expect(got, list(range(len(probs))), values)


@pytest.mark.parametrize("n, tokens, values", [
    (1.0, [2, 3], [0.428571, 0.571429]), (0.0, [0, 1, 2, 3], P4), (3.0, [0, 1, 2, 3], P4)])
def test_peer_top_n_sigma(n: float, tokens: list[int], values: list[float]) -> None:
    _expect(_probs(P4, ["top_n_sigma"], top_n_sigma=n), tokens, values)


def _queue_expectation(n_vocab: int, order: str, top_k: int, top_p: float, min_p: float) -> list[tuple[int, int]]:
    """llama.cpp's test_sampler_queue bookkeeping (logits log(i), min_keep 1): after each
    step, how many tokens remain and the smallest id among them."""
    min_id, size, out = 0, n_vocab, []
    for s in order:
        if s == "k":
            size = min(size, top_k)
            min_id = max(min_id, n_vocab - top_k)
        elif s == "p":
            divisor = n_vocab * (n_vocab - 1) // 2 - min_id * (min_id - 1) // 2
            target = math.ceil(top_p * divisor)
            min_id, size, cum = n_vocab, 0, 0
            while True:
                min_id -= 1
                size += 1
                cum += min_id
                if cum >= target:
                    break
            if min_id == 1:
                min_id, size = 0, size + 1
        elif s == "m":
            want = max(math.ceil((1.0 - min_p) * n_vocab), 1)
            size = min(want, size)
            min_id = max(math.floor(min_p * n_vocab), 1)
            min_id = min(max(min_id, n_vocab - size), n_vocab - 1)
        out.append((size, min_id))
    return out


QUEUES = [("k", 10000, 1.0, 1.0), ("k", 1, 1.0, 1.0), ("p", 10000, 1.0, 1.0), ("p", 10000, 0.0, 1.0),
          ("m", 10000, 1.0, 1.0), ("m", 10000, 1.0, 1e-12), ("k", 100, 1.0, 1.0), ("p", 10000, 0.0003, 1.0),
          ("p", 10000, 0.8, 1.0), ("m", 10000, 1.0, 9997.9 / 9999.0), ("m", 10000, 1.0, 0.1),
          ("kp", 100, 0.8, 0.1), ("km", 100, 0.8, 0.1), ("pk", 100, 0.8, 0.1), ("pm", 100, 0.8, 0.1),
          ("mk", 100, 0.8, 0.1), ("mp", 100, 0.8, 9997.9 / 9999.0), ("mp", 100, 0.8, 0.1),
          ("kpm", 100, 0.8, 0.1), ("kmp", 100, 0.8, 0.1), ("pkm", 100, 0.8, 0.1), ("pmk", 100, 0.8, 0.1),
          ("mkp", 100, 0.8, 0.1), ("mpk", 100, 0.8, 0.1)]


@pytest.mark.parametrize("order, top_k, top_p, min_p", QUEUES)
def test_peer_sampler_queue(order: str, top_k: int, top_p: float, min_p: float) -> None:
    """Each prefix of the order leaves llama.cpp's count of tokens, from its smallest id up
    to the largest. llama.cpp keeps token 0 (logit -inf, probability 0) where its count
    includes it; here a -inf token is out, so the kept ids are its top ones but 0."""
    n_vocab = 10000
    with np.errstate(divide="ignore"):
        logits = np.log(np.arange(n_vocab, dtype=np.float32))  # token 0: -inf, as llama.cpp's log(0)
    names = {"k": "top_k", "p": "top_p", "m": "min_p"}
    for j, (size, min_id) in enumerate(_queue_expectation(n_vocab, order, top_k, top_p, min_p)):
        steps = tuple(names[c] for c in order[:j + 1])
        kw = {"top_k": top_k if "top_k" in steps else 0, "top_p": top_p if "top_p" in steps and top_p > 0 else 1.0,
              "min_p": min_p if "min_p" in steps else 0.0}
        if "top_p" in steps and top_p == 0:
            kw["top_p"] = 1e-9  # llama.cpp's p = 0: one token (ours must be > 0)
        out = process(logits, SamplingParams(samplers=steps, min_keep=1, **kw))  # type: ignore[arg-type]
        kept = np.flatnonzero(np.isfinite(out))
        lowest = max(n_vocab - size, 1)  # the top `size` ids, but token 0
        assert lowest == max(min_id, 1), (steps, size, min_id)  # llama.cpp's two counts agree
        np.testing.assert_array_equal(kept, np.arange(lowest, n_vocab), err_msg=str(steps))


# -- property tests against the plain model -------------------------------------------

_values = st.sampled_from([-5.0, -2.5, -1.0, 0.0, 0.5, 1.0, 1.0, 2.0, 3.25, 4.0])
logit_arrays = st.one_of(
    arrays(np.float32, st.integers(2, 200), elements=_values),
    arrays(np.float32, st.integers(2, 200), elements=st.floats(-20, 20, width=32)),
)
DETERMINISTIC = ["penalties", "dry", "top_n_sigma", "top_k", "typical", "top_p", "min_p", "temperature"]


def _cut_is_clear(logits: np.ndarray, p: float, typical: bool = False) -> bool:
    """No prefix of the distribution, in the order the cut walks it (most likely first, or
    for typical closest to the entropy first), sums to within rounding of p (float32 sums in
    the kernel, float64 in the model, another exp: a cut there may fall either way)."""
    q = np.exp(logits.astype(np.float64) - logits.max())
    q /= q.sum()
    if typical:
        h = -np.sum(q[q > 0] * np.log(q[q > 0]))
        with np.errstate(divide="ignore"):
            q = q[np.argsort(np.abs(-np.log(q) - h), kind="stable")]
    else:
        q = np.sort(q)[::-1]
    return bool(np.all(np.abs(np.cumsum(q) - p) > 1e-4))


@settings(max_examples=EXAMPLES, deadline=None)
@given(logit_arrays, st.data())
def test_chain_equals_the_plain_model(logits: np.ndarray, data: st.DataObject) -> None:
    n = logits.size
    steps = data.draw(st.permutations(DETERMINISTIC))
    steps = steps[:data.draw(st.integers(1, len(steps)))]
    hist = data.draw(st.lists(st.integers(0, min(n - 1, 7)), max_size=60))  # few ids: repeats are common
    p = {
        "repetition_penalty": data.draw(st.sampled_from([1.0, 1.3, 0.8])),
        "frequency_penalty": data.draw(st.sampled_from([0.0, 0.5, -0.25])),
        "presence_penalty": data.draw(st.sampled_from([0.0, 0.3])),
        "penalty_last_n": data.draw(st.sampled_from([None, 0, 5, 32])),
        "dry_multiplier": data.draw(st.sampled_from([0.0, 0.8, 3.0])),
        "dry_base": data.draw(st.sampled_from([1.0, 1.75, 2.5])),
        "dry_allowed_length": data.draw(st.integers(0, 4)),
        "dry_penalty_last_n": data.draw(st.sampled_from([None, 0, 8, 40])),
        "dry_sequence_breakers": tuple(b for b in data.draw(st.sampled_from([(), ((1,),), ((2, 3), (4,))]))
                                       if max(b) < n),
        "top_n_sigma": data.draw(st.sampled_from([0.0, 0.5, 1.5])),
        "top_k": data.draw(st.integers(0, n + 2)),
        "typical_p": data.draw(st.sampled_from([1.0, 0.5, 0.9])),
        "top_p": data.draw(st.sampled_from([1.0, 0.5, 0.9])),
        "min_p": data.draw(st.sampled_from([0.0, 0.05, 0.3])),
        "min_keep": data.draw(st.integers(0, 3)),
        "temperature": data.draw(st.sampled_from([0.0, 0.7, 1.0, 1.5])),
    }
    for name, off in [("penalties", ("repetition_penalty", 1.0)), ("top_n_sigma", ("top_n_sigma", 0.0)),
                      ("top_k", ("top_k", 0)), ("typical", ("typical_p", 1.0)), ("top_p", ("top_p", 1.0)),
                      ("min_p", ("min_p", 0.0)), ("dry", ("dry_multiplier", 0.0))]:
        if name not in steps:  # a parameter whose step is left out must be off
            p[off[0]] = off[1]
            if name == "penalties":
                p["frequency_penalty"] = p["presence_penalty"] = 0.0
    if "temperature" not in steps and p["temperature"] not in (0.0, 1.0):
        p["temperature"] = 1.0
    # The cuts made by probability mass must not sit on a rounding edge: check the
    # distribution each meets (the chain up to it).
    for j, step in enumerate(steps):
        name = {"top_p": "top_p", "typical": "typical_p"}.get(step)
        if name and p[name] < 1.0:
            before = ref.chain(logits, list(steps[:j]), hist, p)
            assume(before)
            assume(_cut_is_clear(np.array([v for _, v in before], np.float32), p[name], step == "typical"))
    want = ref.chain(logits, list(steps), hist, p)
    out = process(logits, SamplingParams(samplers=tuple(steps), **p), np.array(hist, np.int64))  # type: ignore[arg-type]
    got_ids = set(np.flatnonzero(np.isfinite(out)).tolist())
    assert got_ids == {i for i, _ in want}, (steps, p)
    for i, v in want:
        assert out[i] == pytest.approx(v, rel=1e-5, abs=1e-5)


@settings(max_examples=max(1, EXAMPLES // 2), deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=300), st.integers(0, 4),
       st.sampled_from([(), ((1,),), ((2, 3),), ((2, 3), (0,), (4, 4, 1))]), st.sampled_from([None, 3, 50]))
def test_dry_z_function_equals_the_pairwise_definition(hist: list[int], allowed: int, breakers: tuple,
                                                      last_n: int | None) -> None:
    logits = np.zeros(6, np.float32)
    want = ref.dry_penalties(hist, 1.5, 1.75, allowed, last_n, breakers)
    out = process(logits, SamplingParams(samplers=("dry",), dry_multiplier=1.5, dry_allowed_length=allowed,
                                         dry_penalty_last_n=last_n, dry_sequence_breakers=breakers),
                  np.array(hist, np.int64))
    np.testing.assert_allclose(-out.astype(np.float64), [want.get(t, 0.0) for t in range(6)], rtol=1e-6)


def test_dry_grows_its_scratch_for_long_histories() -> None:
    rng = np.random.default_rng(3)
    hist = rng.integers(0, 50, 5000).tolist()
    hist[-30:] = hist[1000:1030]
    params = SamplingParams(samplers=("dry",), dry_multiplier=0.8, dry_sequence_breakers=())
    sampler = Sampler(50, params)
    out = sampler.process(np.zeros(50, np.float32), np.array(hist, np.int64))
    want = ref.dry_penalties(hist, 0.8, 1.75, 2, None, ())
    np.testing.assert_allclose(-out.astype(np.float64), [want.get(t, 0.0) for t in range(50)], rtol=1e-6)


def test_xtc_acts_with_its_probability() -> None:
    x = np.log(np.array([0.4, 0.3, 0.2, 0.1], np.float32))
    sampler = Sampler(4, SamplingParams(samplers=("xtc",), xtc_probability=0.3, xtc_threshold=0.15, seed=11))
    acted = sum(not np.isfinite(sampler.process(x)[0]) for _ in range(4000))
    assert abs(acted / 4000 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)  # 4 sigma


def test_chain_draws_follow_the_chain_distribution() -> None:
    """Drawn tokens stay among the survivors and their frequencies pass a chi-square test."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(300) * 2).astype(np.float32)
    params = SamplingParams(samplers=LLAMA_CPP_ORDER, top_k=20, top_p=0.9, min_p=0.02, temperature=0.8,
                            repetition_penalty=1.2, penalty_last_n=16, dry_multiplier=0.8,
                            dry_sequence_breakers=(), seed=2)
    hist = np.array([int(np.argmax(x))] * 3 + [5, 6, 7, 5, 6], np.int64)
    sampler = Sampler(300, params)
    q = sampler.probabilities(x, hist)
    counts = np.bincount([sampler.sample(x, hist) for _ in range(20000)], minlength=300)
    assert np.all(counts[q == 0] == 0)
    kept = q > 0
    chi2 = float(((counts[kept] - 20000 * q[kept]) ** 2 / (20000 * q[kept])).sum())
    dof = int(kept.sum()) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)


def test_greedy_chain_is_the_most_likely_survivor() -> None:
    x = np.array([3.0, 5.0, 5.0, 1.0], np.float32)
    s = Sampler(4, SamplingParams(temperature=0.0, samplers=("penalties", "top_k"), repetition_penalty=2.0, top_k=2))
    assert s.sample(x, np.array([1], np.int64)) == 2  # 5 / 2 = 2.5 for token 1: token 2 is the top
    assert s.sample(x) == 1  # a tie goes to the lower id
    xtc = Sampler(4, SamplingParams(temperature=0.0, samplers=("xtc",), xtc_probability=1.0, xtc_threshold=0.15))
    assert xtc.sample(np.log(np.array([0.4, 0.3, 0.2, 0.1], np.float32))) == 2  # XTC ran before the argmax


def test_chain_under_a_mask_is_the_chain_of_masked_logits_exact() -> None:
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(1000) * 3).astype(np.float32)
    words = rng.integers(-2**31, 2**31 - 1, (1000 + 31) // 32, dtype=np.int64).astype(np.int32)
    allowed = np.unpackbits(words.view(np.uint8), bitorder="little")[:1000].astype(bool)
    masked = np.where(allowed, x, -np.inf).astype(np.float32)
    params = SamplingParams(samplers=LLAMA_CPP_ORDER, top_k=40, top_p=0.9, temperature=0.7, repetition_penalty=1.1,
                            dry_multiplier=0.8, dry_sequence_breakers=(), seed=4)
    hist = rng.integers(0, 1000, 80)
    a, b = Sampler(1000, params), Sampler(1000, params)
    a.constrain(words)
    np.testing.assert_array_equal(a.process(x, hist), b.process(masked, hist))
    assert [a.sample(x, hist) for _ in range(50)] == [b.sample(masked, hist) for _ in range(50)]


def test_penalty_window_in_the_default_pipeline() -> None:
    """penalty_last_n in the transformers pipeline: the penalties of the last n tokens."""
    x = np.linspace(-2, 2, 20, dtype=np.float32)
    hist = np.array([1, 2, 3, 4, 5, 6], np.int64)
    windowed = process(x, SamplingParams(repetition_penalty=1.5, frequency_penalty=0.2, penalty_last_n=3), hist)
    np.testing.assert_array_equal(
        windowed, process(x, SamplingParams(repetition_penalty=1.5, frequency_penalty=0.2), hist[-3:]))
    np.testing.assert_array_equal(process(x, SamplingParams(repetition_penalty=1.5, penalty_last_n=0), hist), x)


def test_llama_only_filters_select_the_chain() -> None:
    assert SamplingParams().chain is None
    assert SamplingParams(top_k=40, penalty_last_n=64).chain is None
    assert SamplingParams(typical_p=0.9).chain == LLAMA_CPP_ORDER
    assert SamplingParams(samplers=["typ_p", "temp"], typical_p=0.9, temperature=0.5).chain == ("typical",
                                                                                               "temperature")


@pytest.mark.parametrize("kwargs, needle", [
    ({"samplers": ["top_k", "warp"]}, "unknown sampler 'warp'"),
    ({"samplers": ["top_k", "top_k"]}, "listed twice"),
    ({"samplers": "top_k"}, "list of step names"),
    ({"samplers": ["top_k"], "top_p": 0.9}, "top_p (step 'top_p')"),
    ({"samplers": ["top_k"], "temperature": 0.7}, "temperature (step 'temperature')"),
    ({"typical_p": 0}, "typical_p"), ({"top_n_sigma": -1}, "top_n_sigma"), ({"xtc_probability": 2}, "xtc_probability"),
    ({"dry_multiplier": -1}, "dry_multiplier"), ({"dry_base": 0.5}, "dry_base"), ({"min_keep": -1}, "min_keep"),
    ({"penalty_last_n": -1}, "penalty_last_n"), ({"dry_allowed_length": 1.5}, "dry_allowed_length"),
    ({"dry_sequence_breakers": "\n"}, "dry_sequence_breakers"), ({"dry_sequence_breakers": [""]}, "empty"),
    ({"dry_sequence_breakers": [[1, -2]]}, "token ids"),
])
def test_chain_parameter_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(SamplingError) as e:
        SamplingParams(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_string_breakers_need_a_tokenizer() -> None:
    with pytest.raises(SamplingError, match="breaker_sequences"):
        Sampler(10, SamplingParams(dry_multiplier=0.8))
    with pytest.raises(SamplingError, match="outside"):
        Sampler(10, SamplingParams(dry_multiplier=0.8, dry_sequence_breakers=((12,),)))


def test_breaker_sequences_follow_llama_cpp() -> None:
    """Every token holding the string is a breaker alone; a token ending with the string's
    start heads a breaker whose tail is the rest, tokenized."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"a": 0, "b": 1, ":": 2, "a:": 3, "<": 4, "|": 5, ">": 6, "x<": 7, "<|": 8, "|>": 9}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="a"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(tokenizers.Regex("."), "isolated")
    seqs = breaker_sequences(tok, (":", "<|>", (1, 2)), len(vocab))
    assert (2,) in seqs and (3,) in seqs  # ":" and "a:" hold ":"
    assert (4, 5, 6) in seqs and (7, 5, 6) in seqs and (8, 6) in seqs  # "<", "x<", "<|" start "<|>"
    assert (1, 2) in seqs and (0,) not in seqs
