"""Prompt-lookup decoding: several tokens per pass over the weights.

A decode step streams every weight once to produce one token, so its speed is capped by
memory bandwidth. When the text being generated quotes the prompt or itself (a summary
that copies phrases, code rewritten with a small change), the next tokens can be guessed
by finding the last few generated tokens earlier in the text and taking what followed
them there. The guesses (a draft of k tokens) are checked in one pass of k + 1 rows:
the model's own next token after each prefix. The longest prefix of the draft that
agrees is kept with the model's token after it, and the KV cache is rewound past the
rest, so the output is the model's own, token for token: greedy decoding is unchanged
(edgelm's operators compute each verified row with the bits of a plain step, a test;
folders on ONNX Runtime's float kernels agree only to rounding, so there lookup is off
unless asked for).

:class:`NgramIndex` keeps, for n = 2 and 3, where each n-gram of the text so far was last
followed, updated as tokens arrive. :class:`DraftLength` picks k from the acceptance so far
and the measured cost of a verified row, and drafts nothing where that would not pay (a
pass that verifies a wrong draft costs more than a plain step).
"""

from __future__ import annotations

__all__ = ["NgramIndex", "DraftLength", "MAX_DRAFT"]

#: The longest draft one pass verifies: k + 1 rows stay below BlockQuantMatMul's float
#: prefill path (PREFILL_ROWS = 8 in kernels/ortops/qmatmul.h), so every verified row is
#: computed by the decode kernels, bit for bit as a plain step computes it.
MAX_DRAFT = 6


class NgramIndex:
    """For each n in ``ngrams`` (longest first), the position that followed the n-gram's
    most recent occurrence in the tokens added so far."""

    def __init__(self, ngrams: tuple[int, ...] = (3, 2)) -> None:
        self.ngrams = tuple(sorted(ngrams, reverse=True))
        self.tokens: list[int] = []
        self._index: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in self.ngrams}

    def add(self, token: int) -> None:
        t = self.tokens
        t.append(int(token))
        last = len(t) - 1  # the new token follows the n-gram that ends just before it
        for n in self.ngrams:
            if last >= n:
                self._index[n][tuple(t[last - n:last])] = last

    def extend(self, tokens: list[int]) -> None:
        for tok in tokens:
            self.add(tok)

    def draft(self, k: int) -> list[int]:
        """Up to ``k`` tokens that followed an earlier occurrence of the text's last n
        tokens (the longest n that occurred), or [] when none did."""
        t = self.tokens
        for n in self.ngrams:
            if len(t) < n:
                continue
            start = self._index[n].get(tuple(t[len(t) - n:]))
            if start is not None:
                return t[start:start + k]
        return []


class DraftLength:
    """How many tokens to draft, from what a pass is worth on this machine.

    A pass verifying k drafted tokens costs ``1 + c k`` plain steps (c: the cost of a row,
    measured as the model runs, from the time of plain steps and of passes) and yields
    ``1 + p + p^2 + ... + p^k`` tokens on average, where p is the running share of drafted
    tokens accepted (each pass counts its accepted tokens and at most one rejection). The
    length that maximises tokens per step is chosen, or 0 (decode plainly) unless it beats
    a plain step by ``MARGIN``; while drafting is off, one token is drafted every
    ``PROBE`` tokens to notice text that starts repeating itself."""

    MARGIN = 1.03
    PROBE = 32
    DECAY = 0.9

    def __init__(self, row_cost: float = 0.45) -> None:
        self.row_cost = row_cost  # c, until measured
        self._hits = 1.0  # decayed counts of accepted and rejected drafted tokens (a 50% prior)
        self._misses = 1.0
        self._plain_s: float | None = None
        self._since_draft = 0
        self.passes = 0  # verification passes
        self.plain_steps = 0  # steps of one token
        self.drafted = 0
        self.accepted = 0

    @property
    def acceptance(self) -> float:
        return self._hits / (self._hits + self._misses)

    def gain(self, k: int) -> float:
        """Expected tokens per plain step's worth of time for a draft of k tokens."""
        p = self.acceptance
        return (1.0 + sum(p ** i for i in range(1, k + 1))) / (1.0 + self.row_cost * k)

    def next(self) -> int:
        """The draft length for the next token (0: decode plainly)."""
        best = max(range(1, MAX_DRAFT + 1), key=self.gain)
        if self.gain(best) >= self.MARGIN:
            return best
        self._since_draft += 1
        if self._since_draft >= self.PROBE:
            self._since_draft = 0
            return 1
        return 0

    @property
    def weight_passes(self) -> int:
        """Passes over the weights since the first token: plain steps and verification passes."""
        return self.plain_steps + self.passes

    def plain_step(self, seconds: float) -> None:
        self.plain_steps += 1
        self._plain_s = seconds if self._plain_s is None else 0.8 * self._plain_s + 0.2 * seconds

    def update(self, drafted: int, accepted: int, seconds: float | None = None) -> None:
        """A pass over ``drafted`` tokens took ``seconds`` and ``accepted`` of them agreed."""
        self.passes += 1
        self.drafted += drafted
        self.accepted += accepted
        self._since_draft = 0
        self._hits = self.DECAY * self._hits + accepted
        self._misses = self.DECAY * self._misses + (1 if accepted < drafted else 0)
        if seconds is not None and self._plain_s:
            c = (seconds / self._plain_s - 1.0) / drafted
            self.row_cost = 0.8 * self.row_cost + 0.2 * min(2.0, max(0.05, c))
