"""Parallel sampling: ``generate(prompt, n=...)`` draws n samples in lockstep, one pass over
the weights per step, and each sample is the text a lone ``generate`` gives with its seed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import edgelm  # noqa: E402
from edgelm.errors import RuntimeLoadError  # noqa: E402


@pytest.fixture
def tiny(tiny_folder: Path) -> Path:
    return tiny_folder


@pytest.mark.parametrize("n", [1, 3, 7])
def test_each_sample_is_the_lone_run_with_its_seed(tiny: Path, n: int) -> None:
    model = edgelm.load(tiny, threads=2, context=96, sequences=7)
    lone = edgelm.load(tiny, threads=2, context=96)
    lone.eos_ids = model.eos_ids = frozenset()  # run the whole budget: every step batched
    for prompt, seed in (("the edge device", 3), ("hello hello hello", 40)):
        params = edgelm.SamplingParams(temperature=3.0, top_k=200, top_p=0.98, repetition_penalty=1.3, seed=seed)
        samples = model.generate(prompt, max_new_tokens=40, sampling=params, n=n)
        assert len(samples) == n
        for i, text in enumerate(samples):
            want = lone.generate(prompt, max_new_tokens=40,
                                 sampling=edgelm.SamplingParams(**{**params.__dict__, "seed": seed + i}))
            assert text == want, (n, i)
        if n > 1:
            assert len(set(samples)) > 1, "the samples drew the same tokens"


def test_finished_samples_leave_the_batch_and_the_rest_run_on(tiny: Path) -> None:
    """Samples end at different steps (an end-of-sequence id, a stop string): each ends where
    the lone run ends, the others keep their own cache rows after the batch shrinks."""
    model = edgelm.load(tiny, threads=2, context=96, sequences=5)
    lone = edgelm.load(tiny, threads=2, context=96)
    prompt = "abc abd abe"
    ids = lone.encode(prompt)

    def params(i: int) -> edgelm.SamplingParams:
        return edgelm.SamplingParams(temperature=3.0, top_k=0, repetition_penalty=1.3, seed=100 + i)

    runs = [list(lone._tokens(ids, 30, params(i), frozenset(), False)) for i in range(5)]
    # An end-of-sequence id that the five runs first draw at different steps (or never).
    def ends(t: int) -> set[int]:
        return {r.index(t) if t in r else 30 for r in runs}
    eos = max({t for r in runs for t in r}, key=lambda t: (len(ends(t)), -min(ends(t))))
    assert len(ends(eos)) >= 3
    model.eos_ids = lone.eos_ids = frozenset([eos])
    texts = [lone.tokenizer.decode(r) for r in runs]
    stop = [texts[2][8:10]]  # and a stop string from the middle of one sample
    samples = model.generate(prompt, max_new_tokens=30, sampling=params(0), n=5, stop=stop)
    for i, text in enumerate(samples):
        assert text == lone.generate(prompt, max_new_tokens=30, stop=stop, sampling=params(i)), i
    assert len({len(t) for t in samples}) >= 3
    # The prompt's rows stay cached: the next call reuses them.
    model.generate(prompt + " x", max_new_tokens=2, sampling=params(0))
    assert model.reused_tokens >= len(ids) - 1


def test_parallel_requests_are_checked(tiny: Path) -> None:
    model = edgelm.load(tiny, threads=1, context=64, sequences=2)
    sampled = edgelm.SamplingParams(temperature=0.8, seed=1)
    with pytest.raises(RuntimeLoadError, match="sequences >= 3"):
        model.generate("hi", max_new_tokens=4, sampling=sampled, n=3)
    with pytest.raises(RuntimeLoadError, match="needs sampling"):
        model.generate("hi", max_new_tokens=4, n=2)
    with pytest.raises(RuntimeLoadError, match="n must be an integer"):
        model.generate("hi", max_new_tokens=4, sampling=sampled, n=0)
    with pytest.raises(RuntimeLoadError, match="stream"):
        model.generate("hi", max_new_tokens=4, sampling=sampled, n=2, stream=True)
    with pytest.raises(RuntimeLoadError, match="sequences must be"):
        edgelm.load(tiny, threads=1, context=64, sequences=0)
    assert model.generate("hi", max_new_tokens=0, sampling=sampled, n=2) == ["", ""]
    a = model.manifest.architecture
    assert model.kv_cache_bytes == 2 * a.kv_cache_bytes(64, model.manifest.io.kv_dtype)


def test_generate_cli_prints_each_sample(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgelm.cli import main

    args = ["generate", str(tiny), "-p", "the edge", "--raw", "--temperature", "3", "--repetition-penalty", "1.3",
            "--seed", "9", "--max-new-tokens", "12", "--context", "64"]
    assert main([*args, "-n", "2"]) == 0
    out = capsys.readouterr().out
    lone = edgelm.load(tiny, threads=1, context=64)
    for i in range(2):
        want = lone.generate("the edge", max_new_tokens=12, sampling=edgelm.SamplingParams(
            temperature=3.0, repetition_penalty=1.3, seed=9 + i))
        assert f"--- sample {i + 1} of 2 ---\n{want}\n" in out
    assert main([*args[:5], "-n", "2"]) == 2  # greedy
    assert "needs sampling" in capsys.readouterr().err
