"""edgelm.load / Model.generate against transformers' greedy generate, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import edgelm  # noqa: E402
from edgelm.cli import main  # noqa: E402
from edgelm.errors import RuntimeLoadError  # noqa: E402
from edgelm.export import ExportConfig, export  # noqa: E402


@pytest.fixture(scope="module")
def tiny_fp32(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rt") / "fp32"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="fp32", progress=False, verify_prompts=2))
    return out


def test_greedy_generate_equals_transformers(tiny_fp32: Path, tiny_models: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = edgelm.load(tiny_fp32, threads=1, context=128)
    prompt = "hello edge"
    ids = model.encode(prompt)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_models["llama-tied"], dtype=torch.float32).eval()
    ref = ref_model.generate(torch.tensor([ids]), max_new_tokens=30, do_sample=False, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    ref_tokens = ref[0, len(ids):].tolist()
    model_no_eos = edgelm.load(tiny_fp32, threads=1, context=128)
    model_no_eos.eos_ids = frozenset()
    text = model_no_eos.generate(prompt, max_new_tokens=30)
    assert text == model.tokenizer.decode(ref_tokens)


@pytest.mark.parametrize("variant", ["qwen3", "gemma3", "qwen2-bias", "llama-untied", "llama3-rope"])
def test_greedy_generate_equals_transformers_for_each_family(variant: str, tiny_models: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """The fp32 export of each family's tiny model (Qwen3's per-head q/k norms, Qwen2's QKV
    bias, an untied head) generates transformers' greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    export(str(tiny_models[variant]), tmp_path / "m", ExportConfig(quant="fp32", progress=False, verify_prompts=2))
    model = edgelm.load(tmp_path / "m", threads=1, context=128)
    model.eos_ids = frozenset()
    ids = model.encode("the edge device")
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_models[variant], dtype=torch.float32).eval()
    ref = ref_model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    assert list(model._tokens(ids, 40, edgelm.SamplingParams(temperature=0.0), frozenset(), False)) == \
        ref[0, len(ids):].tolist()


def test_stream_pieces_join_to_the_whole(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=128)
    params = edgelm.SamplingParams(temperature=0.8, top_k=20, seed=5)
    whole = model.generate("abc", max_new_tokens=25, sampling=params)
    pieces = list(model.generate("abc", max_new_tokens=25, sampling=params, stream=True))
    assert "".join(pieces) == whole


def test_kv_cache_sized_by_context(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=64)
    a = model.manifest.architecture
    assert model.kv_cache_bytes == 2 * a.num_layers * a.num_kv_heads * a.head_dim * 64 * 4
    assert edgelm.load(tiny_fp32, threads=1).context == min(2048, a.max_context)


def test_prompt_longer_than_context(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=16)
    with pytest.raises(RuntimeLoadError, match="context"):
        model.generate("x" * 40, max_new_tokens=2)
    # truncate=True keeps the prompt's last context - 1 tokens: the same reply as that tail alone.
    ids = model.encode("x" * 40)
    assert len(ids) > 16
    tail = model.tokenizer.decode(ids[-15:])
    assert model.encode(tail) == ids[-15:]
    assert model.generate("x" * 40, max_new_tokens=2, truncate=True) == model.generate(tail, max_new_tokens=2)


def test_stop_string(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=128)
    model.eos_ids = frozenset()
    full = model.generate("hello", max_new_tokens=30)
    assume_text = full[5:8]
    if not assume_text:
        pytest.fail(f"generated too little text to test stop strings: {full!r}")
    cut = model.generate("hello", max_new_tokens=30, stop=[assume_text])
    assert cut == full[:full.find(assume_text)]


def test_generate_cli_streams(tiny_fp32: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tiny_fp32), "-p", "hi", "--max-new-tokens", "5", "--threads", "1"]) == 0
    # What streams to stdout is the greedy reply, then a newline.
    model = edgelm.load(tiny_fp32, threads=1)
    prompt = [{"role": "user", "content": "hi"}] if model.chat_template is not None else "hi"
    want = model.generate(prompt, max_new_tokens=5)
    assert capsys.readouterr().out == want + "\n"


def test_generate_cli_bad_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", str(tmp_path), "-p", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "edgelm.json" in err[0]


def test_sampling_keeps_token_ids_in_range(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=128)
    ids = model.encode("abc")
    assert all(0 <= i < model.manifest.architecture.vocab_size for i in ids)
    assert np.isfinite(model.session.step(ids)).all()


def test_chat_cli_keeps_a_conversation(tiny_fp32: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgelm.cli", "chat", str(tiny_fp32), "--max-new-tokens", "4",
                           "--threads", "1"], input="hello\nand again\n\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("> ") >= 2


def test_chat_turns_reuse_the_kv_cache(tiny_fp32: Path) -> None:
    """A second turn computes only what is new, and answers exactly as a fresh model."""
    model = edgelm.load(tiny_fp32, threads=1, context=256)
    turn1 = [{"role": "user", "content": "hello there"}]
    reply = model.generate(turn1, max_new_tokens=6)
    turn2 = [*turn1, {"role": "assistant", "content": reply}, {"role": "user", "content": "and again"}]
    second = model.generate(turn2, max_new_tokens=6)
    assert model.reused_tokens >= len(model.encode(turn1))
    fresh = edgelm.load(tiny_fp32, threads=1, context=256)
    assert fresh.generate(turn2, max_new_tokens=6) == second and fresh.reused_tokens == 0


def test_a_different_prompt_rewinds_the_cache(tiny_fp32: Path) -> None:
    model = edgelm.load(tiny_fp32, threads=1, context=128)
    a = model.generate("abcdef", max_new_tokens=5)
    b = model.generate("abcXYZ", max_new_tokens=5)
    assert model.reused_tokens == 3
    fresh = edgelm.load(tiny_fp32, threads=1, context=128)
    assert fresh.generate("abcXYZ", max_new_tokens=5) == b
    assert fresh.generate("abcdef", max_new_tokens=5) == a and fresh.reused_tokens == 3


def test_step_results_can_be_kept(tiny_fp32: Path) -> None:
    """step() returns a new array each call: a caller keeping the prefill's logits and the
    next steps' gets each step's own (the bound buffer used to be returned, so every kept row
    became the last step's). The zero-copy view the decode loops use is read-only."""
    model = edgelm.load(tiny_fp32, threads=1, context=128)
    ids = model.encode("keep these rows")
    s = model.session
    kept = [s.step(ids)] + [s.step([t]) for t in (5, 6, 7)]
    s.reset()
    fresh = [s.step(ids).copy()] + [s.step([t]).copy() for t in (5, 6, 7)]
    for a, b in zip(kept, fresh, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(kept[0], kept[-1])
    view = s.step([8], copy=False)
    with pytest.raises(ValueError):
        view[0] = 0.0


def test_dry_keeps_greedy_output_from_repeating(tiny_fp32: Path) -> None:
    """With a DRY multiplier too large to pay, greedy decoding never emits a token that
    extends a repeat of more than ``dry_allowed_length`` tokens of its context (a random
    tiny model otherwise loops), and the string breakers are tokenized by the folder's
    tokenizer (llama.cpp's defaults)."""
    from edgelm.sampling import SamplingParams

    model = edgelm.load(tiny_fp32, threads=1, context=256)
    model.eos_ids = frozenset()
    ids = model.encode("hello edge hello edge")
    plain = model.encode(model.generate("hello edge hello edge", max_new_tokens=60))

    def longest_repeat(seq: list[int], start: int) -> int:
        """The longest run ending at a position >= start that also ends earlier."""
        best = 0
        for j in range(start, len(seq)):
            for i in range(j):
                n = 0
                while n <= i and seq[i - n] == seq[j - n]:
                    n += 1
                best = max(best, n)
        return best

    assert longest_repeat(ids + plain, len(ids)) > 3  # without DRY it loops
    params = SamplingParams(temperature=0.0, dry_multiplier=1e6, dry_allowed_length=2, dry_sequence_breakers=())
    toks = list(model._tokens(ids, 60, params, frozenset(), lookup=False))
    assert longest_repeat(ids + toks, len(ids)) <= 3  # a repeat of 2 may be extended once: 3
    resolved = model.resolve_sampling(SamplingParams(dry_multiplier=0.8))
    assert resolved.dry_sequence_breakers and all(isinstance(b, tuple) for b in resolved.dry_sequence_breakers)
    newline = model.tokenizer.encode("\n", add_special_tokens=False).ids
    assert tuple(newline[:1]) in resolved.dry_sequence_breakers
    assert model.generate("hello", max_new_tokens=8, sampling=SamplingParams(dry_multiplier=0.8, seed=1,
                                                                              temperature=0.7))
