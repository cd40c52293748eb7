"""A grammar's token mask in the sampling kernel (``Sampler.constrain``): the processed
logits and the drawn tokens are those of logits masked first by llguidance's own numpy
``apply_token_bitmask_inplace`` (the reference), for every filter setting, greedy and
sampled, bit for bit. No torch: this runs on the Arm lane too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgelm.errors import SamplingError
from edgelm.sampling import Sampler, SamplingParams

llnp = pytest.importorskip("llguidance.numpy")


def _mask(allowed: np.ndarray) -> np.ndarray:
    """A bool array over the vocabulary as llguidance's int32 words (bit i % 32 of word i // 32)."""
    n = allowed.shape[0]
    bits = np.zeros(((n + 31) // 32) * 32, np.uint64)
    bits[:n] = allowed
    words = (bits.reshape(-1, 32) << np.arange(32, dtype=np.uint64)).sum(axis=1)
    return words.astype(np.uint32).view(np.int32)


def _reference(logits: np.ndarray, words: np.ndarray) -> np.ndarray:
    masked = logits.copy()[None]
    llnp.apply_token_bitmask_inplace(masked, words[None].copy())
    return masked[0]


params_st = st.builds(SamplingParams, temperature=st.sampled_from([0.0, 0.7, 1.0, 1.5]),
                      top_k=st.sampled_from([0, 1, 5, 40]), top_p=st.sampled_from([1.0, 0.9, 0.5]),
                      min_p=st.sampled_from([0.0, 0.05]), repetition_penalty=st.sampled_from([1.0, 1.3]),
                      seed=st.integers(0, 2**32))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 700), density=st.sampled_from([0.0005, 0.02, 0.3, 0.97, 1.0]), params=params_st,
       data=st.data())
def test_masked_sampling_is_sampling_the_masked_logits(n: int, density: float, params: SamplingParams,
                                                       data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    logits = (rng.standard_normal(n) * 3).astype(np.float32)
    allowed = rng.random(n) < density
    allowed[rng.integers(n)] = True  # a grammar always allows something
    words = _mask(allowed)
    prev = rng.integers(0, n, rng.integers(0, 8)).astype(np.int64)
    ref = _reference(logits, words)
    ours, plain = Sampler(n, params), Sampler(n, params)
    ours.constrain(words)
    assert np.array_equal(ours.process(logits, prev), plain.process(ref, prev))  # -inf where masked
    for _ in range(3):  # the same draws from the same seed: the kernel sees the masked logits
        tok = ours.sample(logits, prev)
        assert tok == plain.sample(ref, prev) and allowed[tok]


def test_whole_words_and_the_vocabulary_tail() -> None:
    """Words of all-ones and all-zeros take the fast paths; a vocabulary that is not a
    multiple of 32 ends inside a word."""
    n = 32 * 5 + 7
    logits = np.arange(n, dtype=np.float32)
    allowed = np.zeros(n, bool)
    allowed[32:64] = True  # a whole word
    allowed[n - 3] = True  # in the last, partial word
    s = Sampler(n, SamplingParams(temperature=0.0))
    s.constrain(_mask(allowed))
    out = s.process(logits)
    assert np.array_equal(np.isfinite(out), allowed) and s.sample(logits) == n - 3
    allowed[n - 3] = False
    s.constrain(_mask(allowed))
    assert s.sample(logits) == 63


def test_the_mask_is_read_at_every_call_and_can_be_lifted() -> None:
    n = 100
    logits = np.linspace(0, 1, n, dtype=np.float32)
    s = Sampler(n, SamplingParams(temperature=0.0))
    words = _mask(np.arange(n) == 10)
    s.constrain(words)
    assert s.sample(logits) == 10
    words[:] = _mask(np.arange(n) == 42)  # refilled in place, as a grammar does each step
    assert s.sample(logits) == 42
    s.constrain(None)
    assert s.sample(logits) == n - 1


def test_a_mask_allowing_nothing_says_so() -> None:
    s = Sampler(64, SamplingParams(temperature=0.0))
    s.constrain(_mask(np.zeros(64, bool)))
    with pytest.raises(SamplingError, match="grammar allows no token"):
        s.sample(np.zeros(64, np.float32))


@pytest.mark.parametrize("bad", [np.zeros(1, np.int32), np.zeros(4, np.int64), np.zeros((2, 2), np.int32)])
def test_a_mask_of_the_wrong_size_or_type_is_refused(bad: np.ndarray) -> None:
    """The kernel reads ceil(n / 32) words: a shorter array would be read past its end."""
    with pytest.raises(SamplingError, match="contiguous int32 array of at least 2 words"):
        Sampler(40).constrain(bad)
