"""Prompt-lookup decoding: drafted tokens verified several a pass give greedy decoding's
output token for token; the multi-row step gives each row's logits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import edgelm  # noqa: E402
from edgelm.runtime.lookup import MAX_DRAFT, DraftLength, NgramIndex  # noqa: E402
from tests.test_sampling import _chi2_critical  # noqa: E402


@pytest.fixture
def tiny(tiny_folder: Path) -> Path:
    return tiny_folder


def test_ngram_index_drafts_what_followed() -> None:
    idx = NgramIndex()
    idx.extend([5, 6, 7, 8, 9, 1, 6, 7])
    assert idx.draft(3) == [8, 9, 1]  # "6 7" was followed by 8 9 1
    idx.add(2)
    assert idx.draft(3) == []  # "7 2" and "6 7 2" never occurred before
    idx.extend([5, 6, 7])
    assert idx.draft(2) == [8, 9]  # the longest n-gram first: "5 6 7" was followed by 8 9
    idx.extend([3, 6, 7])
    assert idx.draft(2) == [3, 6]  # only "6 7" matches: its latest earlier occurrence, by 3 6
    assert NgramIndex().draft(4) == []


def test_draft_length_follows_acceptance_and_cost() -> None:
    d = DraftLength(row_cost=0.45)
    assert d.next() >= 1  # the prior: half the drafted tokens accepted
    for _ in range(10):
        d.update(4, 4)
    assert d.acceptance > 0.9 and d.next() == MAX_DRAFT  # whole drafts accepted: the longest
    for _ in range(20):
        d.update(2, 0)
    assert d.acceptance < 0.3 and d.next() == 0  # nothing accepted: decode plainly ...
    assert [d.next() for _ in range(d.PROBE)].count(1) == 1  # ... but probe now and then
    cheap = DraftLength(row_cost=0.05)
    cheap.update(4, 1)
    assert cheap.next() > 0  # verifying a row that costs little pays even at low acceptance
    assert (d.passes, d.drafted, d.accepted) == (30, 80, 40)
    # The row cost is measured: a pass of 2 drafted tokens taking 3x a plain step -> c = 1.
    m = DraftLength(row_cost=0.45)
    m.plain_step(0.01)
    for _ in range(30):
        m.update(2, 2, seconds=0.03)
    assert abs(m.row_cost - 1.0) < 0.01


def test_a_step_of_several_rows_gives_each_rows_logits(tiny: Path) -> None:
    model = edgelm.load(tiny, threads=1, context=64)
    ids = model.encode("the quick brown fox jumps")
    one = model.session
    one.reset()
    one.step(ids[:3])
    singles = [one.step([t]) for t in ids[3:9]]
    one.reset()
    one.step(ids[:3])
    rows = one.step(ids[3:9], rows=6)
    assert rows.shape == (6, model.manifest.architecture.vocab_size)
    if "ai.edgelm" in model.manifest.io.operator_domains:
        # edgelm's operators compute each of up to 7 rows as a step of one row does: the same
        # bits, so verified drafts give exactly greedy decoding's tokens.
        assert np.array_equal(rows.view(np.uint32), np.stack(singles).view(np.uint32))
    else:  # ONNX Runtime's float kernels: equal to rounding
        np.testing.assert_allclose(rows, np.stack(singles), rtol=0, atol=2e-3 * float(np.abs(rows).max()))
    with pytest.raises(ValueError, match="rows"):
        one.step([1, 2], rows=3)


@pytest.mark.parametrize("prompt", ["abc abc abc abc", "one two three one two three one two", "x", "hello world",
                                    "a b c d e f g a b c d e f g a b c", "the cat sat on the mat. the cat"])
def test_greedy_output_is_identical_with_lookup(tiny: Path, prompt: str) -> None:
    model = edgelm.load(tiny, threads=1, context=256)
    plain = model.generate(prompt, max_new_tokens=60, lookup=False)
    assert model.lookup_stats.passes == 0
    again = edgelm.load(tiny, threads=1, context=256)
    looked = again.generate(prompt, max_new_tokens=60, lookup=True)
    assert looked == plain
    # The default is lookup for greedy decoding.
    assert edgelm.load(tiny, threads=1, context=256).generate(prompt, max_new_tokens=60) == plain


def test_lookup_verifies_drafts_on_repetitive_text(tiny: Path) -> None:
    """Random-weight models fall into loops under greedy decoding: the drafts must be taken
    there (the exactness tests above would pass trivially if lookup never drafted)."""
    model = edgelm.load(tiny, threads=1, context=256)
    model.eos_ids = frozenset()
    text = model.generate("abc abc abc abc", max_new_tokens=180, lookup=True)
    s = model.lookup_stats
    assert s.passes > 0 and s.accepted > 0, (s.passes, s.accepted)
    plain = edgelm.load(tiny, threads=1, context=256)
    plain.eos_ids = frozenset()
    assert plain.generate("abc abc abc abc", max_new_tokens=180, lookup=False) == text


def test_lookup_keeps_stop_strings_budget_and_the_cache(tiny: Path) -> None:
    model = edgelm.load(tiny, threads=1, context=256)
    model.eos_ids = frozenset()
    full = model.generate("abc abc abc abc", max_new_tokens=120, lookup=False)
    stop = full[40:43]
    cut = edgelm.load(tiny, threads=1, context=256)
    cut.eos_ids = frozenset()
    assert cut.generate("abc abc abc abc", max_new_tokens=120, stop=[stop], lookup=True) == full[:full.find(stop)]
    for budget in (1, 2, 7, 33):
        a = edgelm.load(tiny, threads=1, context=256)
        a.eos_ids = frozenset()
        b = edgelm.load(tiny, threads=1, context=256)
        b.eos_ids = frozenset()
        assert a.generate("abc abc abc", max_new_tokens=budget, lookup=True) == b.generate(
            "abc abc abc", max_new_tokens=budget, lookup=False)
        # The cache holds exactly the tokens it says: a second turn reuses them and agrees.
        follow = "abc abc abc" + a.generate("abc abc abc", max_new_tokens=budget, lookup=True) + " more"
        assert a.generate(follow, max_new_tokens=20, lookup=True) == b.generate(follow, max_new_tokens=20,
                                                                               lookup=False)


def test_a_full_cache_ends_generation_the_same_way(tiny: Path) -> None:
    a = edgelm.load(tiny, threads=1, context=40)
    a.eos_ids = frozenset()
    b = edgelm.load(tiny, threads=1, context=40)
    b.eos_ids = frozenset()
    assert a.generate("abc abc abc abc", max_new_tokens=100, lookup=True) == b.generate(
        "abc abc abc abc", max_new_tokens=100, lookup=False)


def test_lookup_is_off_by_default_with_sampling(tiny: Path) -> None:
    model = edgelm.load(tiny, threads=1, context=64)
    model.generate("a b a b a b a b", max_new_tokens=8, sampling=edgelm.SamplingParams(temperature=0.7, seed=1))
    assert model.lookup_stats.passes == 0


def _two_sample_chi2(a: list[int], b: list[int]) -> tuple[float, int]:
    """Chi-square of two equal-size samples over their common categories (rare ones pooled)."""
    from collections import Counter

    ca, cb = Counter(a), Counter(b)
    cats = sorted(set(ca) | set(cb), key=lambda c: -(ca[c] + cb[c]))
    big = [c for c in cats if ca[c] + cb[c] >= 20]
    rest_a = sum(ca[c] for c in cats if c not in big)
    rest_b = sum(cb[c] for c in cats if c not in big)
    pairs = [(ca[c], cb[c]) for c in big] + ([(rest_a, rest_b)] if rest_a + rest_b >= 20 else [])
    chi2 = sum((x - y) ** 2 / (x + y) for x, y in pairs)
    return chi2, len(pairs) - 1


def _draws(path: Path, lookup: bool, seeds: int, always_accept: bool = False) -> tuple[list[tuple[int, ...]], int]:
    model = edgelm.load(path, threads=1, context=256)
    if always_accept:  # a wrong rule, to show the test can tell
        model._verify = lambda logits, history, guess, greedy: guess  # type: ignore[method-assign]
    params = edgelm.SamplingParams(temperature=12.0, top_k=6)  # the random model is peaked: flatten it
    base = model.encode("a b a b a b")
    top = np.argsort(model.session.step(base))[-6:].tolist()
    # Every pair of the likely tokens occurs in the prompt: most steps find a draft.
    ids = base + [x for i in top for j in top for x in (i, j)]
    out, passes = [], 0
    for seed in range(seeds):
        out.append(tuple(model._tokens(ids, 5, dataclasses.replace(params, seed=seed), frozenset(), lookup)))
        passes += model.lookup_stats.passes
    return out, passes


def test_sampling_with_lookup_draws_from_the_samplers_distribution(tiny: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    """With sampling, verified drafts follow the speculative-sampling rule: each generated
    token is distributed as a plain draw (chi-square, per position, p = 0.001), while
    drafts are verified in most runs. Accepting every draft instead is caught."""
    from edgelm.runtime import lookup as lookup_module

    monkeypatch.setattr(lookup_module.DraftLength, "next", lambda self: 3)  # draft whenever there is a match
    n = 1500
    plain, none = _draws(tiny, False, n)
    looked, passes = _draws(tiny, True, n)
    wrong, _ = _draws(tiny, True, n, always_accept=True)
    assert none == 0 and passes > n // 2  # most runs verified drafts
    worst_wrong = 0.0
    for pos in range(1, 5):
        chi2, df = _two_sample_chi2([t[pos] for t in plain], [t[pos] for t in looked])
        assert df >= 2 and chi2 < _chi2_critical(df), (pos, chi2, df)
        chi2_w, df_w = _two_sample_chi2([t[pos] for t in plain], [t[pos] for t in wrong])
        worst_wrong = max(worst_wrong, chi2_w / _chi2_critical(df_w))
    assert worst_wrong > 1.0, "accepting every draft went unnoticed"
