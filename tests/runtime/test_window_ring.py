"""A window layer's KV ring (Gemma 3's sliding-window layers under edgelm's Attention):
the runtime keeps its window and RING_SLACK rows instead of the whole context, and every
logit and token is the bits of a session that keeps the whole context.

The tiny Gemma 3 has 8-key windows around one global layer. RING_SLACK is set to the
longest lookup draft here (6): the rings hold 14 rows, so a 40-token prompt is computed in
passes of 7 tokens, and decoding wraps the rings many times within a 120-token context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import edgelm  # noqa: E402
import edgelm.arch  # noqa: E402
from edgelm.runtime.lookup import MAX_DRAFT  # noqa: E402

CONTEXT = 120


@pytest.fixture(scope="module")
def gemma_int4(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("gemma-ring") / "int4"
    export(str(tiny_models["gemma3"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


def _load(folder: Path, slack: int, monkeypatch: pytest.MonkeyPatch, **kw: object) -> edgelm.Model:
    with monkeypatch.context() as m:
        m.setattr(edgelm.arch, "RING_SLACK", slack)
        return edgelm.load(folder, threads=2, context=CONTEXT, **kw)


@pytest.fixture
def pair(gemma_int4: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[edgelm.Model, edgelm.Model]:
    """(ring, whole): the same folder with 14-row rings, and with every layer at CONTEXT rows,
    stepped in the same passes (a prompt in one pass and in several differ by float
    rounding in the linear kernels, whose prefill path depends on the rows per pass)."""
    ring, whole = _load(gemma_int4, MAX_DRAFT, monkeypatch), _load(gemma_int4, 10 ** 6, monkeypatch)
    whole.session._pass_rings = ring.session._pass_rings
    return ring, whole


def test_the_ring_is_what_is_allocated_and_counted(pair: tuple[edgelm.Model, edgelm.Model]) -> None:
    ring, whole = pair
    arch = ring.manifest.architecture
    for model in pair:
        assert model.kv_cache_bytes == sum(c.nbytes for c in model.session._caches)
    window_layers = sum(1 for i in range(arch.num_layers) if arch.window_of(i))
    per_row = 2 * arch.num_kv_heads * arch.head_dim * 2  # K and V, float16
    assert whole.kv_cache_bytes - ring.kv_cache_bytes == window_layers * (CONTEXT - 14) * per_row
    assert ring.session.max_step == 7


def test_a_prompt_in_passes_agrees_with_one_pass(gemma_int4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring, one = _load(gemma_int4, MAX_DRAFT, monkeypatch), _load(gemma_int4, 10 ** 6, monkeypatch)
    assert one.session.max_step is None
    ids = list(np.random.default_rng(1).integers(0, 256, 40))
    passes = []
    real = ring.session._pass
    ring.session._pass = lambda x: (passes.append(x.shape[1]), real(x))[1]
    a, b = ring.session.step(ids, rows=3), one.session.step(ids, rows=3)
    assert passes == [14, 7, 7, 7, 5], passes  # to the rings' end, then a window's room at a time
    assert np.abs(a - b).max() <= 1e-3 * np.abs(b).max() and (a.argmax(-1) == b.argmax(-1)).all()


def test_the_memory_model_counts_the_default_ring(gemma_int4: Path) -> None:
    """At the default RING_SLACK (128) a window layer of 8 keys holds 136 of 256 rows: what
    the memory model and plan count is what the runtime allocates."""
    model = edgelm.load(gemma_int4, threads=2, context=256, sequences=2)
    arch = model.manifest.architecture
    assert model.kv_cache_bytes == arch.kv_cache_bytes(256, "float16", 2) == sum(c.nbytes for c in model.session._caches)
    assert {c.shape[2] for c in model.session._caches} == {8 + edgelm.arch.RING_SLACK, 256}
    assert arch.kv_cache_bytes(256, "float32") == 2 * arch.num_layers * arch.kv_size * 256 * 4  # GQA: no ring


def test_steps_through_a_wrapping_ring_give_the_bits_of_a_whole_cache(pair: tuple[edgelm.Model, edgelm.Model]) -> None:
    """A chunked prompt, decode past the ring many times, a rewind it still holds, a
    multi-row verification pass: each step's logits equal, bit for bit."""
    rng = np.random.default_rng(0)
    sessions = [m.session for m in pair]
    vocab = pair[0].manifest.architecture.vocab_size

    def step(ids: list[int], rows: int = 1) -> None:
        a, b = (s.step(ids, rows=rows) for s in sessions)
        assert np.array_equal(a, b), (sessions[0].length, len(ids))

    step(rng.integers(0, vocab, 40).tolist())
    for _ in range(30):
        step([int(rng.integers(vocab))])
    for s in sessions:
        s.rewind(s.length - MAX_DRAFT)
    step(rng.integers(0, vocab, MAX_DRAFT + 1).tolist(), rows=MAX_DRAFT + 1)
    for _ in range(35):
        step([int(rng.integers(vocab))])
    assert sessions[0].length > 100


def test_rewinding_past_the_ring_is_refused_and_the_prompt_cache_recomputes(
        pair: tuple[edgelm.Model, edgelm.Model]) -> None:
    ring, whole = pair
    ring.session.step(list(range(1, 60)))
    assert not ring.session.can_rewind(30) and ring.session.can_rewind(60 - MAX_DRAFT - 1)
    with pytest.raises(ValueError, match="ring no longer holds"):
        ring.session.rewind(30)
    ring.reset()
    # A follow-up prompt sharing a prefix the ring has moved past: recomputed, same text.
    first, follow = "the edge device " * 3, "the edge device " * 3 + "runs on"
    for model in pair:
        model.generate(first, max_new_tokens=40)
    assert ring.generate(follow, max_new_tokens=30) == whole.generate(follow, max_new_tokens=30)
    assert ring.reused_tokens == 0 and whole.reused_tokens > 0


@pytest.mark.parametrize("lookup", [False, True])
def test_generated_tokens_equal_a_whole_cache(pair: tuple[edgelm.Model, edgelm.Model], lookup: bool) -> None:
    prompt = "abc abd abe abc abd " * 3
    ring, whole = pair
    assert ring.generate(prompt, max_new_tokens=70, lookup=lookup) == whole.generate(prompt, max_new_tokens=70,
                                                                                  lookup=lookup)
    params = edgelm.SamplingParams(temperature=2.0, top_k=100, seed=9)
    assert ring.generate(prompt, max_new_tokens=70, sampling=params) == whole.generate(prompt, max_new_tokens=70,
                                                                                    sampling=params)


def test_parallel_samples_on_rings_equal_a_whole_cache(gemma_int4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = _load(gemma_int4, MAX_DRAFT, monkeypatch, sequences=3)
    whole = _load(gemma_int4, 10 ** 6, monkeypatch, sequences=3)
    whole.session._pass_rings = ring.session._pass_rings
    params = edgelm.SamplingParams(temperature=2.0, top_k=100, seed=4)
    for model in (ring, whole):
        model.eos_ids = frozenset()
    want = whole.generate("the edge device", max_new_tokens=60, sampling=params, n=3)
    assert ring.generate("the edge device", max_new_tokens=60, sampling=params, n=3) == want
    assert ring.generate("the edge device", max_new_tokens=10, sampling=params) == whole.generate(
        "the edge device", max_new_tokens=10, sampling=params)
