"""Greedy generation on the fp32 export of the real SmolLM2 equals transformers'."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

import edgelm  # noqa: E402

pytestmark = pytest.mark.slow


def test_greedy_tokens_equal_transformers_generate(smollm2_gguf: Path, smollm2_folders: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = edgelm.load(smollm2_folders["fp32"], threads=2, context=256)
    model.eos_ids = frozenset()  # compare a fixed number of tokens
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = model.encode(messages)
    ref_model = AutoModelForCausalLM.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name,
                                                     dtype=torch.float32).eval()
    ref = ref_model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=24, do_sample=False, eos_token_id=None, pad_token_id=2)
    expected = model.tokenizer.decode(ref[0, len(ids):].tolist())
    assert model.generate(messages, max_new_tokens=24) == expected
    assert "Paris" in expected


QUOTING = [
    "The lighthouse at Point Reyes was built in 1870. Its lens was made in Paris and carried up the cliff in "
    "pieces. The keepers walked down 308 steps every night to light the lamp.\n\nCopy the text above exactly.",
    "Print this function again with `total` renamed to `acc`:\n\ndef add_all(xs):\n    total = 0\n"
    "    for x in xs:\n        total += x\n    return total\n",
    "What is the capital of France?",
]


@pytest.mark.parametrize("prompt", QUOTING)
def test_lookup_gives_greedy_decodings_tokens(prompt: str, smollm2_folders: dict[str, Path]) -> None:
    """On the real model (int4, edgelm's operators), prompt-lookup decoding, on by default,
    gives plain greedy decoding's text, and drafts are accepted where the text quotes."""
    looked = edgelm.load(smollm2_folders["int4"], threads=2, context=512)
    plain = edgelm.load(smollm2_folders["int4"], threads=2, context=512)
    messages = [{"role": "user", "content": prompt}]
    text = looked.generate(messages, max_new_tokens=96)
    assert text == plain.generate(messages, max_new_tokens=96, lookup=False)
    if prompt is QUOTING[0]:  # the model copies the passage: most drafts are taken
        assert looked.lookup_stats.accepted > 10, looked.lookup_stats.accepted
