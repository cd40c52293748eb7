"""Sampling: validated parameters and the compiled kernels behind them.

``process(logits, params, previous_tokens=...)`` returns the processed float32 logits
(repetition penalty, frequency/presence penalties, temperature, then top-k, top-p and
min-p; filtered entries are -inf), with transformers' semantics for each step.
``sample(logits, params, previous_tokens=..., seed=...)`` returns one token id.
A :class:`Sampler` owns the scratch buffers, so a generation loop allocates nothing per
token; the two functions build a throw-away one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import SamplingError

__all__ = ["SamplingParams", "Sampler", "process", "sample", "GREEDY", "FLOAT32_TINY", "FLOAT32_MAX"]

_CANDIDATE = np.dtype([("value", np.float32), ("index", np.int32)])
MAX_VOCAB = 1 << 24
#: The smallest normal float32: a temperature below it is taken as greedy, and penalties
#: must lie in [FLOAT32_TINY, FLOAT32_MAX] so that the kernel's float32 arithmetic on them
#: never divides by zero or makes NaN.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _kernels() -> Any:
    try:
        from ._kernels import _sampling  # type: ignore[attr-defined]
    except ImportError as e:  # the extension was not built
        raise SamplingError("the compiled sampling kernels are missing: reinstall edgelm "
                            "(pip install -e . builds them)") from e
    return _sampling


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the next token. ``temperature=0`` is greedy (argmax after penalties), and
    so is any temperature below float32's smallest normal (``FLOAT32_TINY``, 1.2e-38): the
    limit of sampling as the temperature goes to 0, where dividing by it would overflow.

    top_k=0 and top_p=1 and min_p=0 disable those filters (a top_k at or above the
    vocabulary size keeps everything); penalties of 1 (repetition) and 0 (frequency,
    presence) change nothing. The repetition penalty lies in [FLOAT32_TINY, FLOAT32_MAX]
    (the kernel divides by it in float32). ``seed`` makes draws reproducible.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        def finite(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SamplingError(f"{name} must be a finite number, got {v!r}")
            return float(v)

        if finite("temperature") < 0:
            raise SamplingError(f"temperature must be >= 0, got {self.temperature}")
        if (isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer))
                or not 0 <= self.top_k < 2**63):
            raise SamplingError(f"top_k must be an integer in [0, 2**63), got {self.top_k!r}")
        if not 0 < finite("top_p") <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= finite("min_p") <= 1:
            raise SamplingError(f"min_p must be in [0, 1], got {self.min_p}")
        if not FLOAT32_TINY <= finite("repetition_penalty") <= FLOAT32_MAX:
            raise SamplingError(f"repetition_penalty must be in [{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}], "
                                f"got {self.repetition_penalty}")
        finite("frequency_penalty")
        finite("presence_penalty")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                                      or not 0 <= self.seed < 2**64):
            raise SamplingError(f"seed must be an integer in [0, 2**64), got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature < FLOAT32_TINY

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


GREEDY = SamplingParams(temperature=0.0)


class Sampler:
    """Scratch buffers for one vocabulary size, and the random state of one sequence.

    A step of a decode loop (float32 logits, an int64 history) is one call into the
    kernels; other inputs are converted and checked first.
    """

    def __init__(self, vocab_size: int, params: SamplingParams | None = None) -> None:
        if not 1 <= vocab_size <= MAX_VOCAB:
            raise SamplingError(f"vocabulary size must be in [1, {MAX_VOCAB}], got {vocab_size}")
        self.vocab_size = int(vocab_size)
        self._k = _kernels()
        # The output buffer has 256 spare floats: the kernel starts the output 1 KiB in when
        # it would otherwise sit within a few cache lines of the logits modulo 4 KiB.
        self._out_buf = np.empty(vocab_size + 256, np.float32)
        self._counts = np.zeros(vocab_size, np.int32)
        self._heap = np.empty(vocab_size, np.float32)
        self._probs = np.empty(vocab_size, np.float32)
        self._bmax = np.zeros(2 * ((vocab_size + 63) // 64), np.float32)  # block maxima, then flags
        self._cand = np.empty(vocab_size, _CANDIDATE)
        self._core = self._k.SamplerCore(self._out_buf, self._counts, self._heap, self._probs, self._cand,
                                         self._bmax)
        self._no_prev = np.empty(0, np.int64)
        self._masked: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.params = params or SamplingParams()
        self.reseed(self.params.seed)

    def constrain(self, mask: np.ndarray | None) -> None:
        """Sample only tokens whose bit is set in ``mask`` (int32 words, bit i % 32 of word
        i // 32: llguidance's bitset), which the kernel reads at every call, so a grammar
        refills it in place between steps; None lifts the constraint. Masked tokens are
        -inf before the penalties and filters, for greedy and sampled decoding alike."""
        if mask is None:
            self._core.clear_mask()
            self.mask = None
            return
        words = (self.vocab_size + 31) // 32
        if mask.dtype != np.int32 or mask.ndim != 1 or mask.shape[0] < words or not mask.flags.c_contiguous:
            raise SamplingError(f"a token mask must be a contiguous int32 array of at least {words} words")
        if self._masked is None:
            self._masked = np.empty(self.vocab_size, np.float32)
        self._core.set_mask(mask, self._masked)
        self.mask = mask

    @property
    def params(self) -> SamplingParams:
        return self._params

    @params.setter
    def params(self, params: SamplingParams) -> None:
        self._params = params
        self._configure(params)

    def _configure(self, p: SamplingParams) -> None:
        self._core.configure(0.0 if p.greedy else p.temperature, int(p.top_k), p.top_p, p.min_p, p.repetition_penalty,
                             p.frequency_penalty, p.presence_penalty)

    def reseed(self, seed: int | None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) & (2**64 - 1)  # type: ignore[arg-type]
        self._core.reseed(seed)

    @property
    def _out(self) -> np.ndarray:
        """The output of the last call (where the kernel wrote it)."""
        start = self._core.out_offset
        return self._out_buf[start:start + self.vocab_size]

    @property
    def _n_cand(self) -> int:
        return int(self._core.n_cand)

    def _check(self, logits: np.ndarray, previous_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        logits = np.asarray(logits)
        if logits.ndim != 1 or logits.shape[0] != self.vocab_size:
            raise SamplingError(f"logits must be a 1-D array of {self.vocab_size} values, got shape {logits.shape}")
        if logits.dtype != np.float32 or not logits.flags.c_contiguous:
            logits = np.ascontiguousarray(logits, dtype=np.float32)
        if previous_tokens is None or len(previous_tokens) == 0:
            return logits, self._no_prev
        # The kernel checks the id range (one pass over the history, no temporaries).
        return logits, np.ascontiguousarray(previous_tokens, dtype=np.int64).reshape(-1)

    def _raise(self, rc: int) -> None:
        if rc == -1:
            raise SamplingError("logits contain NaN (from the model, or +inf met an infinite penalty)")
        if rc == -2:
            if self.mask is not None:
                raise SamplingError("the grammar allows no token here (or only tokens whose logits are -inf)")
            raise SamplingError("all logits are -inf: nothing to sample")
        if rc == -3:
            raise SamplingError(f"previous token ids must be in [0, {self.vocab_size})")
        if rc == -4:
            raise SamplingError(f"logits must be a 1-D array of {self.vocab_size} values")
        if rc == -5:
            raise SamplingError("a logit is +inf, or the penalties or the temperature pushed one past float32's "
                                "range: use milder penalties or a higher temperature")
        raise SamplingError(f"sampling kernel error {rc}")

    def _call(self, fn: Any, logits: Any, previous_tokens: Any, params: SamplingParams | None, *args: Any) -> int:
        override = params is not None and params is not self._params
        if override:
            self._configure(params)  # type: ignore[arg-type]
        try:
            try:  # the decode loop's case: float32 logits, an int64 history (or none)
                rc = fn(logits, self._no_prev if previous_tokens is None else previous_tokens, *args)
            except (TypeError, ValueError):  # another dtype, shape, layout or a list: convert, check
                rc = fn(*self._check(logits, previous_tokens), *args)
        finally:
            if override:
                self._configure(self._params)
        if rc < 0:
            self._raise(rc)
        return int(rc)

    def process(self, logits: np.ndarray, previous_tokens: Any = None,
                params: SamplingParams | None = None) -> np.ndarray:
        """Processed logits in the sampler's own buffer (overwritten by the next call)."""
        return self._process(logits, previous_tokens, params, fill=True)

    def probabilities(self, logits: np.ndarray, previous_tokens: Any = None) -> np.ndarray:
        """The distribution :meth:`sample` draws from (float64, a new array): softmax of the
        processed logits, filtered tokens 0."""
        x = self.process(logits, previous_tokens).astype(np.float64)
        e = np.exp(x - x.max())
        return e / e.sum()

    def uniform(self) -> float:
        """The next number of this sampler's seeded stream, in [0, 1)."""
        return float(self._core.uniform())

    def _process(self, logits: np.ndarray, previous_tokens: Any, p: SamplingParams | None, fill: bool) -> np.ndarray:
        self._call(self._core.process, logits, previous_tokens, p, fill)
        return self._out

    def sample(self, logits: np.ndarray, previous_tokens: Any = None, params: SamplingParams | None = None) -> int:
        """The next token: greedy (penalties, then argmax, no warpers, as transformers) when
        the temperature is 0, else a draw from the processed logits; the logits are read
        in place."""
        return self._call(self._core.sample, logits, previous_tokens, params)


def process(logits: np.ndarray, params: SamplingParams, previous_tokens: Any = None) -> np.ndarray:
    """The processed float32 logits (a new array): penalties, temperature, top-k, top-p,
    min-p; filtered entries are -inf. The numpy/torch equivalent is transformers'
    processors applied in that order."""
    logits = np.asarray(logits)
    return Sampler(int(logits.shape[-1]) if logits.ndim else 0, params).process(logits, previous_tokens).copy()


def sample(logits: np.ndarray, params: SamplingParams, previous_tokens: Any = None, seed: int | None = None) -> int:
    """One token id drawn from the processed logits (argmax when ``temperature == 0``)."""
    logits = np.asarray(logits)
    sampler = Sampler(int(logits.shape[-1]) if logits.ndim else 0, params)
    if seed is not None:
        sampler.reseed(seed)
    return sampler.sample(logits, previous_tokens)
