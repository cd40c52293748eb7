"""Built-in verification: the exported ONNX model against the PyTorch reference.

Teacher-forced on fixed prompts: PyTorch runs each whole prompt once; the ONNX model
prefills the first few tokens and then decodes the rest one token at a time through
its KV cache, so the check covers prefill, the in-place cache and the decode path.
fp32 must match to ``max |logit diff| <= 1e-3``; quantized models report top-1
agreement and mean KL(reference || exported) of the next-token distributions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Architecture
from ..manifest import IOSpec, Quant, Verification
from ..runtime.session import DecoderSession, open_session

__all__ = ["VERIFY_PROMPTS", "THRESHOLDS", "verify_model", "verify_sequences", "teacher_forced", "compare_logits"]

#: Mixed prose, code, dialogue and facts, so agreement is not measured on one register.
VERIFY_PROMPTS = [
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome, and "
    "the capital of Spain is Madrid. Each of these cities has a long history as a centre of trade,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n"
    "        a, b = b, a + b\n    return a\n\n\ndef is_prime(n):\n    if n < 2:\n        return False\n",
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide into "
    "glucose and oxygen. It takes place mainly in the leaves, inside small structures called chloroplasts,",
    "User: Can you recommend a good book for a long flight?\nAssistant: Sure! If you like science fiction, "
    "try The Left Hand of Darkness by Ursula K. Le Guin. If you prefer history, a good choice is",
    "To bake a simple loaf of bread you need flour, water, salt and yeast. First, mix the yeast with warm "
    "water and let it rest for ten minutes. Then add the flour and the salt and knead the dough until",
    "The French Revolution began in 1789 and ended in the late 1790s with the rise of Napoleon Bonaparte. "
    "Its causes included a financial crisis, bad harvests and widespread resentment of the privileges of",
    "Dear team,\n\nThank you all for your hard work this quarter. We shipped the new app on time and the "
    "first reviews are very positive. Next week we will start planning the roadmap for the coming year,",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is lower, so "
    "water boils at a lower temperature. This is why cooking pasta in the mountains takes longer, because",
    "In mathematics, a prime number is a natural number greater than 1 that has no positive divisors other "
    "than 1 and itself. The first few primes are 2, 3, 5, 7, 11, 13, 17, 19, 23 and 29. There are",
    "The quick brown fox jumps over the lazy dog. This sentence is famous because it contains every letter "
    "of the English alphabet at least once, which makes it useful for testing typewriters and fonts,",
    "SELECT customers.name, COUNT(orders.id) AS order_count\nFROM customers\nJOIN orders ON orders.customer_id"
    " = customers.id\nWHERE orders.created_at >= '2024-01-01'\nGROUP BY customers.name\nORDER BY",
    "Once upon a time, in a small village at the edge of a great forest, there lived an old woman who kept "
    "a garden full of strange flowers. Every morning she would walk between the rows and talk to them,",
    "The mitochondria is often called the powerhouse of the cell because it produces most of the energy "
    "the cell needs, in the form of ATP. Mitochondria have their own DNA, which suggests that long ago",
    "Climate change refers to long-term shifts in temperatures and weather patterns. Since the 1800s, "
    "human activities have been the main driver of climate change, primarily due to burning fossil fuels",
    "To install the package, run pip install edgelm in a fresh virtual environment. Then export a model "
    "with the command line tool and run it with the Python API. The documentation explains each option,",
    "Q: What is the largest planet in our solar system?\nA: Jupiter is the largest planet in our solar "
    "system. It is a gas giant with a mass more than twice that of all the other planets combined, and",
    "The Great Wall of China is a series of fortifications that were built across the historical northern "
    "borders of ancient Chinese states. Several walls were built from as early as the 7th century BC,",
    "import numpy as np\n\nx = np.linspace(0, 2 * np.pi, 100)\ny = np.sin(x)\nprint(y.max(), y.min())\n"
    "z = np.cumsum(y) / len(y)\nfor i, value in enumerate(z):\n    if value > 0.1:\n",
    "Running regularly improves heart health, strengthens muscles and bones, and can reduce stress. "
    "Beginners should start slowly, with short runs two or three times a week, and increase the distance",
    "The Amazon rainforest covers much of the Amazon basin of South America. The majority of the forest is "
    "contained within Brazil, with 60% of the rainforest, followed by Peru with 13%, and Colombia with",
]

#: Minimum top-1 agreement per quantization (fp32 is held to max |diff| instead).
THRESHOLDS = {Quant.INT8: 0.97, Quant.INT4: 0.95}
FP32_MAX_ABS_DIFF = 1e-3


def compare_logits(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """(max |diff|, top-1 agreement, mean KL(ref || got)) over rows of ``[n, vocab]`` logits."""
    ref = ref.astype(np.float64)
    got = got.astype(np.float64)
    max_diff = float(np.abs(ref - got).max())
    agree = float((ref.argmax(-1) == got.argmax(-1)).mean())
    lp = ref - ref.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    lq = got - got.max(-1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
    kl = float((np.exp(lp) * (lp - lq)).sum(-1).mean())
    return max_diff, agree, kl


def verify_sequences(tokenizer_json: Path, vocab_size: int, *, prompts: int = 20, tokens: int = 64,
                     prefill: int = 8) -> list[list[int]]:
    """The verification's token sequences: each prompt's first ``tokens`` ids, those longer
    than ``prefill`` (the peer comparison scores every runtime on the same ones)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    texts = (VERIFY_PROMPTS * (1 + prompts // len(VERIFY_PROMPTS)))[:prompts]
    seqs = [[i for i in tok.encode(t, add_special_tokens=False).ids if i < vocab_size][:tokens] for t in texts]
    return [ids for ids in seqs if len(ids) > prefill]


def teacher_forced(session: DecoderSession, ids: list[int], prefill: int) -> np.ndarray:
    """Next-token logits at positions ``prefill - 1 .. len(ids) - 2``: the first ``prefill``
    tokens as one prefill, then one token a step through the KV cache (the decode path)."""
    session.reset()
    rows = [session.step(ids[:prefill])]
    rows += [session.step(ids[t:t + 1]) for t in range(prefill, len(ids) - 1)]
    return np.stack(rows)


def verify_model(onnx_path: Path, arch: Architecture, io: IOSpec, torch_model: Any, tokenizer_json: Path, quant: Quant,
                 *, prompts: int = 20, tokens: int = 64, prefill: int = 8, enforced: bool = True,
                 min_agreement: float | None = None, threads: int | None = None, progress: Callable[[int], None] | None = None) -> Verification:
    import torch

    start = time.perf_counter()
    session = open_session(onnx_path, arch, io, context=min(tokens, arch.max_context), threads=threads)
    refs, gots = [], []
    for ids in verify_sequences(tokenizer_json, arch.vocab_size, prompts=prompts, tokens=tokens, prefill=prefill):
        with torch.no_grad():
            ref = torch_model(torch.tensor([ids])).logits[0].float().numpy()
        refs.append(ref[prefill - 1:len(ids) - 1])
        gots.append(teacher_forced(session, ids, prefill))
        if progress:
            progress(1)
    ref_all, got_all = np.concatenate(refs), np.concatenate(gots)
    max_diff, agree, kl = compare_logits(ref_all, got_all)
    if quant is Quant.FP32:
        passed = max_diff <= FP32_MAX_ABS_DIFF
        criterion = f"max |logit diff| <= {FP32_MAX_ABS_DIFF:g}"
    else:
        floor = THRESHOLDS[quant] if min_agreement is None else min_agreement
        passed = agree >= floor
        criterion = f"top-1 agreement >= {floor:g}"
    return Verification(passed=bool(passed or not enforced), reference="transformers fp32 (PyTorch), teacher-forced",
                        prompts=len(refs), tokens=int(ref_all.shape[0]), max_abs_logit_diff=max_diff,
                        top1_agreement=agree, mean_kl=kl, criterion=criterion, enforced=enforced,
                        seconds=round(time.perf_counter() - start, 2))
