"""Sampling: validated parameters and the compiled kernels behind them.

``process(logits, params, previous_tokens=...)`` returns the processed float32 logits
(filtered entries are -inf). Two pipelines, both compiled:

* by default transformers' processors in their fixed order (repetition penalty,
  frequency/presence penalties, temperature, top-k, top-p, min-p), with transformers'
  semantics for each step;
* when ``samplers=[...]`` names an order, or a filter only llama.cpp has is on (typical-p,
  top-n-sigma, XTC, DRY, ``min_keep``), llama.cpp's chain in that order (its default order
  is :data:`LLAMA_CPP_ORDER`), with llama.cpp's semantics for each step: top-k keeps
  exactly k, temperature 0 keeps the most likely survivor, and so on.

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

__all__ = ["SamplingParams", "Sampler", "process", "sample", "GREEDY", "FLOAT32_TINY", "FLOAT32_MAX",
           "LLAMA_CPP_ORDER", "STEPS", "DRY_BREAKERS", "breaker_sequences"]

_CANDIDATE = np.dtype([("value", np.float32), ("index", np.int32)])
MAX_VOCAB = 1 << 24
#: The smallest normal float32: a temperature below it is taken as greedy, and penalties
#: must lie in [FLOAT32_TINY, FLOAT32_MAX] so that the kernel's float32 arithmetic on them
#: never divides by zero or makes NaN.
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: The chain's steps and their kernel codes (kernels/_typedefs.pxd).
STEPS = {"penalties": 1, "dry": 2, "top_n_sigma": 3, "top_k": 4, "typical": 5, "top_p": 6, "min_p": 7, "xtc": 8,
         "temperature": 9}
#: llama.cpp's names for the same steps (its --samplers flag), accepted as aliases.
_ALIASES = {"typ_p": "typical", "typical_p": "typical", "temp": "temperature", "top_nsigma": "top_n_sigma"}
#: llama.cpp's default order (common/common.h).
LLAMA_CPP_ORDER = ("penalties", "dry", "top_n_sigma", "top_k", "typical", "top_p", "min_p", "xtc", "temperature")
#: llama.cpp's default DRY sequence breakers.
DRY_BREAKERS: tuple[str, ...] = ("\n", ":", "\"", "*")
_BREAKER_CHARS = 40  # llama.cpp truncates a breaker to 40 characters ...
_BREAKER_TAIL = 20  # ... and its tail to 20 tokens


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

    llama.cpp's filters (see the module docstring for when its chain runs): ``typical_p``
    < 1 (locally typical sampling), ``top_n_sigma`` > 0 (keep logits within n standard
    deviations of the top), ``xtc_probability`` > 0 with ``xtc_threshold`` (exclude top
    choices: drop every token at or above the threshold but the least likely of them),
    ``dry_multiplier`` > 0 with ``dry_base``, ``dry_allowed_length``,
    ``dry_penalty_last_n`` and ``dry_sequence_breakers`` (penalise a token that would
    extend a repeat of the context, by multiplier x base^(length - allowed)), and
    ``min_keep`` (top-p, min-p, typical and XTC keep at least that many). A parameter that
    is set but whose step ``samplers`` leaves out is an error, not ignored.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    #: The penalties read the last ``penalty_last_n`` tokens (None: all of them; 0: none).
    penalty_last_n: int | None = None
    #: The chain's order (names of :data:`STEPS` or llama.cpp's aliases); None with no
    #: llama.cpp-only filter on is the transformers pipeline.
    samplers: tuple[str, ...] | list[str] | None = None  # kept as a tuple
    min_keep: int = 0
    typical_p: float = 1.0
    top_n_sigma: float = 0.0
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    #: DRY reads the last ``dry_penalty_last_n`` tokens (None: all of them; 0: none).
    dry_penalty_last_n: int | None = None
    #: Strings (a tokenizer turns them into token sequences: Model.generate does) or
    #: sequences of token ids.
    dry_sequence_breakers: tuple[str | tuple[int, ...], ...] = DRY_BREAKERS

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

        def count(name: str, lo: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v < 2**62:
                raise SamplingError(f"{name} must be an integer >= {lo}{' or None' if optional else ''}, got {v!r}")

        count("penalty_last_n", 0, optional=True)
        count("dry_penalty_last_n", 0, optional=True)
        count("min_keep", 0)
        count("dry_allowed_length", 0)
        if not 0 < finite("typical_p") <= 1:
            raise SamplingError(f"typical_p must be in (0, 1], got {self.typical_p}")
        if finite("top_n_sigma") < 0:
            raise SamplingError(f"top_n_sigma must be >= 0 (0 is off), got {self.top_n_sigma}")
        if not 0 <= finite("xtc_probability") <= 1:
            raise SamplingError(f"xtc_probability must be in [0, 1], got {self.xtc_probability}")
        if not 0 <= finite("xtc_threshold") <= 1:
            raise SamplingError(f"xtc_threshold must be in [0, 1] (above 0.5 it never acts), got {self.xtc_threshold}")
        if not 0 <= finite("dry_multiplier") <= FLOAT32_MAX:
            raise SamplingError(f"dry_multiplier must be in [0, {FLOAT32_MAX:.3g}] (0 is off), got {self.dry_multiplier}")
        if not 1 <= finite("dry_base") <= FLOAT32_MAX:
            raise SamplingError(f"dry_base must be in [1, {FLOAT32_MAX:.3g}], got {self.dry_base}")
        breakers = self.dry_sequence_breakers
        if isinstance(breakers, (str, bytes)) or not isinstance(breakers, (tuple, list)):
            raise SamplingError("dry_sequence_breakers must be a sequence of strings or of token-id sequences")
        for b in breakers:
            if isinstance(b, str):
                if not b:
                    raise SamplingError("a DRY sequence breaker is empty")
            elif (not isinstance(b, (tuple, list)) or not b
                  or any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < MAX_VOCAB
                         for t in b)):
                raise SamplingError(f"a DRY sequence breaker must be a string or a non-empty sequence of token ids, "
                                    f"got {b!r}")
        object.__setattr__(self, "dry_sequence_breakers",
                           tuple(b if isinstance(b, str) else tuple(int(t) for t in b) for b in breakers))
        if self.samplers is not None:
            if isinstance(self.samplers, str) or not isinstance(self.samplers, (tuple, list)):
                raise SamplingError("samplers must be a list of step names, e.g. "
                                    "['penalties', 'top_k', 'top_p', 'temperature']")
            names = []
            for name in self.samplers:
                key = _ALIASES.get(name, name) if isinstance(name, str) else name
                if key not in STEPS:
                    raise SamplingError(f"unknown sampler {name!r}: the steps are {', '.join(STEPS)}")
                if key in names:
                    raise SamplingError(f"sampler {key!r} is listed twice")
                names.append(key)
            object.__setattr__(self, "samplers", tuple(names))
            missing = [f"{param} (step {step!r})" for step, param, on in self._settings() if on and step not in names]
            if missing:
                raise SamplingError(f"samplers leaves out what is set: {', '.join(missing)}")

    def _settings(self) -> list[tuple[str, str, bool]]:
        """(step, parameter, whether it changes anything) for every step of the chain."""
        return [
            ("penalties", "repetition/frequency/presence penalty", self.repetition_penalty != 1.0
             or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0),
            ("dry", "dry_multiplier", self.dry_multiplier != 0.0),
            ("top_n_sigma", "top_n_sigma", self.top_n_sigma > 0.0),
            ("top_k", "top_k", self.top_k > 0),
            ("typical", "typical_p", self.typical_p < 1.0),
            ("top_p", "top_p", self.top_p < 1.0),
            ("min_p", "min_p", self.min_p > 0.0),
            ("xtc", "xtc_probability", self.xtc_probability > 0.0),
            ("temperature", "temperature", not self.greedy and self.temperature != 1.0),
        ]

    @property
    def chain(self) -> tuple[str, ...] | None:
        """The steps llama.cpp's chain runs, in order, or None for the transformers pipeline."""
        if self.samplers is not None:
            return tuple(self.samplers)
        if (self.typical_p < 1.0 or self.top_n_sigma > 0.0 or self.xtc_probability > 0.0
                or self.dry_multiplier != 0.0 or self.min_keep > 0):
            return LLAMA_CPP_ORDER
        return None

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
        self._cand2 = np.empty(vocab_size, _CANDIDATE)  # the chain's second list (typical's order)
        self._core = self._k.SamplerCore(self._out_buf, self._counts, self._heap, self._probs, self._cand,
                                         self._bmax, self._cand2)
        self._dry_max: np.ndarray | None = None  # DRY's scratch, made when DRY is first on
        self._dry_room = 0
        self._breakers: tuple[tuple[int, ...], ...] | None = None
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
        chain = p.chain
        steps = tuple(STEPS[s] for s in chain) if chain else ()
        dry = chain is not None and "dry" in chain and p.dry_multiplier != 0.0
        if dry:
            self._prepare_dry(p.dry_sequence_breakers)
        last_n = -1 if p.penalty_last_n is None else int(p.penalty_last_n)
        self._core.configure(0.0 if p.greedy else p.temperature, int(p.top_k), p.top_p, p.min_p, p.repetition_penalty,
                             p.frequency_penalty, p.presence_penalty, last_n, steps, int(p.min_keep), p.typical_p,
                             p.top_n_sigma, p.xtc_probability, p.xtc_threshold, p.dry_multiplier if dry else 0.0,
                             p.dry_base, int(p.dry_allowed_length),
                             -1 if p.dry_penalty_last_n is None else int(p.dry_penalty_last_n))

    def _prepare_dry(self, breakers: tuple[str | tuple[int, ...], ...]) -> None:
        """DRY's scratch and its breakers, as token sequences (strings need a tokenizer:
        resolve them with :func:`breaker_sequences` first, as Model.generate does)."""
        if any(isinstance(b, str) for b in breakers):
            raise SamplingError("DRY's sequence breakers are strings: turn them into token ids with "
                                "edgelm.sampling.breaker_sequences(tokenizer, ...) first (Model.generate does)")
        seqs = tuple(b for b in breakers if not isinstance(b, str))
        if any(t >= self.vocab_size for b in seqs for t in b):
            raise SamplingError(f"a DRY sequence breaker holds a token id outside [0, {self.vocab_size})")
        if self._dry_max is None:
            self._dry_max = np.full(self.vocab_size, -1, np.int32)
            self._grow_dry(1024)
        if seqs != self._breakers:
            self._breakers = seqs
            self._set_dry()

    def _grow_dry(self, room: int) -> None:
        self._dry_room = room
        self._dry_z = np.zeros(room, np.int32)
        self._dry_touched = np.zeros(room, np.int32)
        if self._breakers is not None:
            self._set_dry()

    def _set_dry(self) -> None:
        seqs = self._breakers or ()
        if not seqs:
            self._core.set_dry(self._dry_max, self._dry_z, self._dry_touched, None, None, None, None, None)
            return
        first = np.full(self.vocab_size, -1, np.int32)
        nxt = np.full(len(seqs), -1, np.int32)
        off = np.zeros(len(seqs) + 1, np.int32)
        single = np.zeros(self.vocab_size, np.uint8)
        tails: list[int] = []
        for i in range(len(seqs) - 1, -1, -1):  # chained so each head lists its breakers in order
            nxt[i] = first[seqs[i][0]]
            first[seqs[i][0]] = i
        for i, seq in enumerate(seqs):
            off[i] = len(tails)
            tails.extend(seq[1:])
            if len(seq) == 1:
                single[seq[0]] = 1
        off[-1] = len(tails)
        tail = np.array(tails or [0], np.int32)
        self._core.set_dry(self._dry_max, self._dry_z, self._dry_touched, first, nxt, off, tail, single)

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
        if rc == -6:
            raise SamplingError("the DRY window outgrew its scratch")  # _call grows it first: not reached
        raise SamplingError(f"sampling kernel error {rc}")

    def _call(self, fn: Any, logits: Any, previous_tokens: Any, params: SamplingParams | None, *args: Any) -> int:
        override = params is not None and params is not self._params
        if override:
            self._configure(params)  # type: ignore[arg-type]
        try:
            try:  # the decode loop's case: float32 logits, an int64 history (or none)
                rc = fn(logits, self._no_prev if previous_tokens is None else previous_tokens, *args)
            except (TypeError, ValueError):  # another dtype, shape, layout or a list: convert, check
                logits, previous_tokens = self._check(logits, previous_tokens)
                rc = fn(logits, previous_tokens, *args)
            if rc == -6:  # a longer history than DRY's scratch holds: grow it (doubling) and redo
                self._grow_dry(max(2 * self._dry_room, len(previous_tokens)))
                rc = fn(logits, previous_tokens, *args)
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


def breaker_sequences(tokenizer: Any, breakers: tuple[str | tuple[int, ...], ...],
                      vocab_size: int) -> tuple[tuple[int, ...], ...]:
    """DRY's string breakers as token sequences, the way llama.cpp builds them: every token
    whose text holds the string is a breaker by itself, and a token whose text ends with
    the string's beginning is the head of a breaker whose tail is the rest, tokenized
    (strings cut to 40 characters, tails to 20 tokens). ``tokenizer`` is a Hugging Face
    ``tokenizers.Tokenizer``; token-id breakers pass through."""
    texts: list[str] | None = None
    out: list[tuple[int, ...]] = []
    for b in breakers:
        if not isinstance(b, str):
            out.append(b)
            continue
        if texts is None:
            texts = tokenizer.decode_batch([[i] for i in range(vocab_size)], skip_special_tokens=False)
        s = b[:_BREAKER_CHARS]
        seen: set[tuple[int, ...]] = set()
        for tok, word in enumerate(texts):
            if s in word:
                if (tok,) not in seen:
                    seen.add((tok,))
                    out.append((tok,))
                continue
            # The word's last characters are s's first: the rest of s, tokenized, is the tail.
            for start in range(max(0, len(word) - len(s) + 1), len(word)):
                if s.startswith(word[start:]):
                    rest = s[len(word) - start:]
                    tail = tuple(tokenizer.encode(rest, add_special_tokens=False).ids[:_BREAKER_TAIL])
                    seq = (tok, *tail)
                    if seq not in seen:
                        seen.add(seq)
                        out.append(seq)
    return tuple(out)


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
