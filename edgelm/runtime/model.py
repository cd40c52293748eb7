"""``edgelm.load(DIR)`` -> :class:`Model`: generation on an exported model folder.

Reads the manifest (never re-derives the architecture), sizes the KV cache by the
context the caller asks for (default 2,048 tokens, not the model's maximum), and runs
prefill + decode with the compiled sampler. Only onnxruntime, numpy, tokenizers and the
kernels are needed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from ..errors import RuntimeLoadError
from ..grammar import Constraint, GrammarError, Matcher, TokenizerGrammars
from ..manifest import Manifest, confined_file, read_manifest, verify_files
from ..sampling import Sampler, SamplingParams, breaker_sequences
from . import ortops
from .chat import load_chat_template, render_chat
from .lookup import DraftLength, NgramIndex
from .session import DecoderSession, open_session
from .tools import ToolCall

__all__ = ["load", "Model", "DEFAULT_CONTEXT"]

DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class _Stop:
    eos_ids: frozenset[int]
    strings: tuple[str, ...]

    def find(self, text: str) -> int:
        """Where the first of the stop strings in ``text`` starts, or -1."""
        return min((text.find(s) for s in self.strings if s and s in text), default=-1)


class Model:
    def __init__(self, folder: Path, manifest: Manifest, session: DecoderSession, tokenizer: Any) -> None:
        self.folder = folder
        self.manifest = manifest
        self.session = session
        self.tokenizer = tokenizer
        self.chat_template = load_chat_template(folder)
        self.eos_ids = frozenset(manifest.generation.eos_token_id)
        self.sampler = Sampler(manifest.architecture.vocab_size)
        self.grammars = TokenizerGrammars(folder / "tokenizer.json", manifest.architecture.vocab_size, self.eos_ids)
        self._cached_ids: list[int] = []  # the tokens whose keys and values the cache holds
        self.reused_tokens = 0  # prompt tokens the last generate() took from the cache
        self.lookup_stats = DraftLength()  # the last generate()'s verification passes
        self._breakers: dict[tuple[Any, ...], tuple[tuple[int, ...], ...]] = {}  # DRY's, by their strings

    def resolve_sampling(self, params: SamplingParams) -> SamplingParams:
        """``params`` with DRY's string breakers turned into this tokenizer's token
        sequences (llama.cpp's way: :func:`edgelm.sampling.breaker_sequences`), computed once
        per set of strings."""
        breakers = params.dry_sequence_breakers
        if not (params.chain and "dry" in params.chain and params.dry_multiplier != 0.0
                and any(isinstance(b, str) for b in breakers)):
            return params
        seqs = self._breakers.get(breakers)
        if seqs is None:
            seqs = self._breakers[breakers] = breaker_sequences(self.tokenizer, breakers,
                                                                self.manifest.architecture.vocab_size)
        return dataclasses.replace(params, dry_sequence_breakers=seqs)

    @property
    def context(self) -> int:
        return self.session.context

    @property
    def kv_cache_bytes(self) -> int:
        return self.session.kv_cache_bytes

    def encode(self, prompt: str | Sequence[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        text = prompt if isinstance(prompt, str) else render_chat(self.chat_template, list(prompt), tools=tools)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RuntimeLoadError("the prompt is not valid text (it holds unpaired surrogates)") from None
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @overload
    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = ...,
                 sampling: SamplingParams | None = ..., stop: Sequence[str] = ..., stream: Literal[False] = ...,
                 truncate: bool = ..., lookup: bool | None = ..., n: None = ...,
                 response_format: dict[str, Any] | None = ..., grammar: str | Constraint | None = ...) -> str: ...

    @overload
    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = ...,
                 sampling: SamplingParams | None = ..., stop: Sequence[str] = ..., stream: Literal[False] = ...,
                 truncate: bool = ..., lookup: bool | None = ..., *, n: int,
                 response_format: dict[str, Any] | None = ..., grammar: str | Constraint | None = ...) -> list[str]: ...

    @overload
    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = ...,
                 sampling: SamplingParams | None = ..., stop: Sequence[str] = ..., *, stream: Literal[True],
                 truncate: bool = ..., lookup: bool | None = ...,
                 response_format: dict[str, Any] | None = ...,
                 grammar: str | Constraint | None = ...) -> Iterator[str]: ...

    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = 256,
                 sampling: SamplingParams | None = None, stop: Sequence[str] = (), stream: bool = False,
                 truncate: bool = False, lookup: bool | None = None,
                 n: int | None = None, response_format: dict[str, Any] | None = None,
                 grammar: str | Constraint | None = None) -> str | Iterator[str] | list[str]:
        """Generate a reply. ``prompt`` is a string or chat messages (the folder's chat
        template is applied). With ``stream=True`` returns an iterator of text pieces.

        ``lookup`` (prompt-lookup decoding, :mod:`edgelm.runtime.lookup`: tokens guessed
        from earlier in the text, several verified per pass over the weights) gives greedy
        decoding's output token for token, and with sampling draws from the same
        distribution (the speculative-sampling rule; a seed gives other tokens than without
        lookup). By default it is on for greedy decoding of folders on edgelm's operators
        (the quantized default), off otherwise.

        ``n`` (with sampling) returns a list of ``n`` samples of the same prompt, drawn in
        parallel: the prompt is computed once, and each step advances every unfinished
        sample in one pass over the weights. Sample ``i`` is the text ``generate`` gives
        alone with seed ``seed + i`` (with ``n`` at most 7, token for token; from 8 rows the
        quantized matmul takes its prefill kernels, equal to float rounding). The model must
        be loaded with ``sequences >= n``.

        ``response_format`` (``{"type": "json_schema", "schema": {...}}`` or ``{"type":
        "json_object"}``) or ``grammar`` (a Lark or GBNF grammar, or a
        :class:`~edgelm.grammar.Constraint`, e.g. ``Constraint("regex", r"...")``) constrains
        the output: each step only tokens the grammar allows can be chosen (greedy or
        sampled; the mask is applied in the sampling kernel before the filters), and the
        reply ends when the grammar is complete. A reply cut by ``max_new_tokens`` is a
        prefix of a valid one. A grammar that does not compile is a GrammarError."""
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise RuntimeLoadError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        ids = self.encode(prompt)
        if not ids:
            raise RuntimeLoadError("the prompt is empty")
        if len(ids) >= self.context:
            if not truncate:
                raise RuntimeLoadError(f"the prompt has {len(ids)} tokens but the context is {self.context} "
                                       "(load with a larger context, or pass truncate=True)")
            ids = ids[-(self.context - 1):]
        params = sampling or SamplingParams(temperature=0.0)
        greedy = params.temperature == 0.0
        constraint = self._constraint(response_format, grammar)
        if constraint is not None:
            if lookup:
                raise RuntimeLoadError("lookup cannot be combined with a grammar (drafted tokens are not masked)")
            lookup = False
            self.grammars.compile(constraint)  # a grammar that does not compile fails here, before any work
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise RuntimeLoadError(f"n must be an integer >= 1, got {n!r}")
            if n > 1 and greedy:
                raise RuntimeLoadError("n > 1 needs sampling (temperature > 0): greedy decoding would give "
                                       f"{n} copies of one answer")
            if n > self.session.sequences:
                raise RuntimeLoadError(f"n = {n} samples need a model loaded with sequences >= {n} "
                                       f"(this one holds {self.session.sequences})")
            if stream:
                raise RuntimeLoadError("stream=True gives one sample's text; it cannot be combined with n")
            if lookup:
                raise RuntimeLoadError("lookup verifies one sequence's drafts; it cannot be combined with n")
            return self._samples(ids, int(n), max_new_tokens, params, _Stop(self.eos_ids, tuple(stop)), constraint)
        if lookup is None:  # where verified rows are a plain step's bits: edgelm's operators
            lookup = greedy and ortops.DOMAIN in self.manifest.io.operator_domains
        pieces = self._pieces(ids, max_new_tokens, params, _Stop(self.eos_ids, tuple(stop)), lookup=bool(lookup),
                              constraint=constraint)
        return pieces if stream else "".join(pieces)

    def tool_call(self, messages: Sequence[dict[str, Any]], tools: list[dict[str, Any]], max_new_tokens: int = 256,
                  sampling: SamplingParams | None = None) -> ToolCall:
        """One call of one of ``tools`` (OpenAI function specs) for the chat ``messages``:
        the tools rendered by the chat template (or listed in a system message when it takes
        none), the reply constrained to ``{"name": <a tool>, "arguments": <valid for it>}``
        in the template's wrapper (Qwen's ``<tool_call>`` tags) if it has one, and parsed."""
        from .tools import parse_call, parse_tools, tool_constraint, tool_messages

        specs = parse_tools(tools)
        if isinstance(messages, str):
            raise GrammarError("tool_call takes chat messages (a list of role/content dicts)")
        msgs = tool_messages(list(messages), specs, self.chat_template)
        ids = self.encode(msgs, tools=[t.to_openai() for t in specs])
        if len(ids) >= self.context:
            raise RuntimeLoadError(f"the prompt with its tools has {len(ids)} tokens but the context is {self.context}")
        constraint = tool_constraint(specs, self.chat_template)
        self.grammars.compile(constraint)
        params = sampling or SamplingParams(temperature=0.0)
        text = "".join(self._pieces(ids, max_new_tokens, params, _Stop(self.eos_ids, ()), constraint=constraint))
        return parse_call(text)

    @staticmethod
    def _constraint(response_format: Any, grammar: Any) -> Constraint | None:
        if response_format is not None and grammar is not None:
            raise GrammarError("pass response_format or grammar, not both")
        if response_format is not None:
            return Constraint.from_response_format(response_format)
        if grammar is None or isinstance(grammar, Constraint):
            return grammar
        if not isinstance(grammar, str):
            raise GrammarError(f"grammar must be a Lark or GBNF grammar (a string) or a Constraint, got "
                               f"{type(grammar).__name__}")
        return Constraint("gbnf" if "::=" in grammar else "lark", grammar)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Step the prompt, reusing the cached prefix it shares with what the cache holds
        (a chat's earlier turns, a repeated system prompt): the cache is rewound to the
        common prefix and only the rest is computed."""
        held = self._cached_ids
        common = 0
        limit = min(len(held), len(ids) - 1, self.session.length)  # step at least one token
        while common < limit and held[common] == ids[common]:
            common += 1
        if not self.session.can_rewind(common):  # a window layer's ring has moved past it
            common = 0
        self.session.rewind(common)
        self._cached_ids = held[:common]
        self.reused_tokens = common
        logits = self.session.step(ids[common:], copy=False)
        self._cached_ids = list(ids)
        return logits

    def reset(self) -> None:
        """Forget the cached conversation (the next prompt is computed from scratch)."""
        self.session.reset()
        self._cached_ids = []

    def _tokens(self, ids: list[int], budget: int, params: SamplingParams, eos: frozenset[int],
                lookup: bool, constraint: Constraint | None = None) -> Iterator[int]:
        """The generated tokens, at most ``budget``, ending at an end-of-sequence token if one
        comes (or when ``constraint``'s grammar is complete). With ``lookup``, drafted tokens
        are verified several a pass (see _verify); the tokens are the same. The cache holds
        every token yielded but the last."""
        if constraint is None:
            yield from self._free_tokens(ids, budget, params, eos, lookup)
            return
        matcher = self.grammars.compile(constraint).matcher()
        self.sampler.constrain(matcher.mask)
        try:
            for tok in self._free_tokens(ids, budget, params, eos, False, matcher):
                matcher.consume(tok)
                yield tok
                if matcher.done:
                    return
        finally:
            self.sampler.constrain(None)

    def _free_tokens(self, ids: list[int], budget: int, params: SamplingParams, eos: frozenset[int],
                     lookup: bool, matcher: Matcher | None = None) -> Iterator[int]:
        """_tokens' loop; with ``matcher``, its mask is refilled before each token is sampled
        (the caller consumes each token it is given before asking for the next)."""
        params = self.resolve_sampling(params)
        self.sampler.params = params
        self.sampler.reseed(params.seed)
        history = np.empty(len(ids) + budget, np.int64)
        history[:len(ids)] = ids
        n_hist = len(ids)
        logits = self._prefill(ids)
        index = NgramIndex() if lookup else None
        if index is not None:
            index.extend(ids)
        self.lookup_stats = DraftLength()
        greedy = params.temperature == 0.0
        if matcher is not None:
            matcher.fill()
        tok = self.sampler.sample(logits, history[:n_hist])
        count = 0
        while True:
            yield tok
            if tok in eos:
                return
            history[n_hist] = tok
            n_hist += 1
            count += 1
            room = self.context - self.session.length - 1  # cache rows left after tok's
            if count >= budget or room < 0:
                return
            k = min(self.lookup_stats.next(), budget - count - 1, room) if index is not None else 0
            draft = []
            if index is not None:
                index.add(tok)
                if k > 0:
                    draft = index.draft(k)
            if index is None or not draft:
                t0 = time.perf_counter()
                logits = self.session.step([tok], copy=False)
                self.lookup_stats.plain_step(time.perf_counter() - t0)
                self._cached_ids.append(tok)
                if matcher is not None:
                    matcher.fill()
                tok = self.sampler.sample(logits, history[:n_hist])
                continue
            # One pass over tok and the draft: row j is the next-token logits after draft[:j].
            start = self.session.length
            t0 = time.perf_counter()
            rows = self.session.step([tok, *draft], copy=False, rows=len(draft) + 1)
            seconds = time.perf_counter() - t0
            accepted: list[int] = []
            nxt = -1
            for j, guess in enumerate(draft):
                nxt = self._verify(rows[j], history[:n_hist + j], guess, greedy)
                if nxt != guess or nxt in eos:
                    break
                accepted.append(nxt)
                history[n_hist + j] = nxt
            else:  # every drafted token agreed: the last row gives the one after them
                nxt = self.sampler.sample(rows[len(draft)], history[:n_hist + len(draft)])
            self.lookup_stats.update(len(draft), len(accepted), seconds)
            # Keep tok and the accepted tokens in the cache; the rejected rows get overwritten.
            self.session.rewind(start + 1 + len(accepted))
            self._cached_ids.extend([tok, *accepted])
            for a in accepted:
                yield a
                index.add(a)
            n_hist += len(accepted)
            count += len(accepted)
            tok = nxt

    def _parallel_tokens(self, ids: list[int], n: int, budget: int, params: SamplingParams, eos: frozenset[int],
                         finished: Callable[[int, int], bool] | None = None,
                         constraint: Constraint | None = None) -> Iterator[list[int | None]]:
        """``n`` samples of one prompt in lockstep: one prefill, then one batched step per
        token for the samples still going. Yields, each step, the token each sample drew
        (None for a sample that has ended: at an end-of-sequence id, which is yielded, or
        when ``finished(i, token)`` said so after its token). Sample i draws with seed
        ``params.seed + i``. A finished sample leaves the batch; when the generator ends
        (or is closed) the session is back to one sequence holding the prompt. With
        ``constraint`` each sample has its own matcher, and ends when its grammar is complete."""
        params = self.resolve_sampling(params)
        samplers = [Sampler(self.manifest.architecture.vocab_size, params) for _ in range(n)]
        matchers = [self.grammars.compile(constraint).matcher() for _ in range(n)] if constraint else []
        for i, sampler in enumerate(samplers):
            sampler.reseed(None if params.seed is None else params.seed + i)
            if matchers:
                sampler.constrain(matchers[i].mask)
        history = np.empty((n, len(ids) + budget), np.int64)
        history[:, :len(ids)] = ids
        logits = self._prefill(ids)
        self.session.fork(n)
        active = list(range(n))  # the sample in each batch slot
        rows = np.broadcast_to(logits, (n, logits.shape[-1]))
        try:
            for step in range(budget):
                drawn: list[int | None] = [None] * n
                tokens, still = [], []
                for slot, i in enumerate(active):
                    if matchers:
                        matchers[i].fill()
                    tok = samplers[i].sample(rows[slot], history[i, :len(ids) + step])
                    history[i, len(ids) + step] = tok
                    drawn[i] = tok
                    tokens.append(tok)
                    if matchers:
                        matchers[i].consume(tok)
                    if (tok not in eos and not (finished is not None and finished(i, tok))
                            and not (matchers and matchers[i].done)):
                        still.append(slot)
                yield drawn
                if not still or step + 1 == budget:
                    return
                if len(still) < len(active):
                    self.session.keep(still)
                    active = [active[slot] for slot in still]
                    tokens = [tokens[slot] for slot in still]
                rows = self.session.step_batch(tokens)
        finally:  # every sequence's first len(ids) rows are the prompt's: keep those
            self.session.join()
            if self.session.can_rewind(len(ids)):
                self.session.rewind(len(ids))
                self._cached_ids = list(ids)
            else:  # a window layer's ring has moved on: the next prompt is computed afresh
                self.reset()

    def _samples(self, ids: list[int], n: int, max_new_tokens: int, params: SamplingParams,
                 stop: _Stop, constraint: Constraint | None = None) -> list[str]:
        budget = min(max_new_tokens, self.context - len(ids))
        out: list[list[int]] = [[] for _ in range(n)]
        if budget <= 0:
            return ["" for _ in range(n)]

        def finished(i: int, tok: int) -> bool:
            out[i].append(tok)
            return bool(stop.strings) and stop.find(self.tokenizer.decode(out[i])) >= 0

        for _ in self._parallel_tokens(ids, n, budget, params, stop.eos_ids, finished, constraint):
            pass
        texts = []
        for toks in out:
            text = self.tokenizer.decode(toks)
            hit = stop.find(text)
            texts.append(text[:hit] if hit >= 0 else text)
        return texts

    def _verify(self, logits: np.ndarray, history: np.ndarray, guess: int, greedy: bool) -> int:
        """The token after ``history`` given a drafted ``guess``: greedy decoding's own token;
        with sampling, the speculative-sampling rule for a draft that is one token for sure
        (Leviathan et al. 2023, Chen et al. 2023): keep the guess with probability p(guess),
        else draw from p without it, renormalised. Either way the token is distributed as a
        plain draw from p, the sampler's distribution after its filters."""
        if greedy:
            return self.sampler.sample(logits, history)
        p = self.sampler.probabilities(logits, history)
        if self.sampler.uniform() < p[guess]:
            return guess
        p[guess] = 0.0
        cdf = np.cumsum(p)
        return int(min(np.searchsorted(cdf, self.sampler.uniform() * cdf[-1], side="right"), len(p) - 1))

    def _pieces(self, ids: list[int], max_new_tokens: int, params: SamplingParams, stop: _Stop,
                lookup: bool = False, constraint: Constraint | None = None) -> Iterator[str]:
        budget = min(max_new_tokens, self.context - len(ids))  # the cache bounds it, not the caller
        out: list[int] = []
        emitted = 0
        tokens = self._tokens(ids, budget, params, stop.eos_ids, lookup, constraint) if budget > 0 else iter(())
        for tok in tokens:
            if tok in stop.eos_ids:
                break
            out.append(tok)
            text = self.tokenizer.decode(out)
            hit = stop.find(text)
            if hit >= 0:
                if hit > emitted:
                    yield text[emitted:hit]
                return
            # Hold back an incomplete UTF-8 character and a possible stop-string prefix.
            safe = len(text)
            if text.endswith("\ufffd"):
                safe -= 1
            for s in stop.strings:
                for k in range(min(len(s) - 1, safe), 0, -1):
                    if text[:safe].endswith(s[:k]):
                        safe -= k
                        break
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        text = self.tokenizer.decode(out)
        if len(text) > emitted and stop.find(text) < 0:
            yield text[emitted:]


def load(folder: str | Path, threads: int | None = None, context: int | None = None, *,
         verify: bool = False, sequences: int = 1) -> Model:
    """Load an exported model folder; ``context`` sizes the KV cache (default 2,048), of
    each of ``sequences`` (the most samples one ``generate(..., n=)`` call draws in parallel;
    each costs a cache).

    The folder is untrusted: the manifest is parsed and checked, every file it lists must be
    inside the folder and of the size it records (with ``verify=True`` also of its sha256),
    and the graph's inputs and outputs must agree with the manifest; each failure is a
    RuntimeLoadError or ManifestError naming what differs."""
    from tokenizers import Tokenizer

    folder = Path(folder)
    manifest = read_manifest(folder)
    a = manifest.architecture
    if context is not None and (isinstance(context, bool) or not 1 <= int(context) <= a.max_context):
        raise RuntimeLoadError(f"context must be in [1, {a.max_context}] tokens for this model, got {context}")
    ctx = min(DEFAULT_CONTEXT, a.max_context) if context is None else int(context)
    if threads is not None and not 1 <= int(threads) <= 1024:
        raise RuntimeLoadError(f"threads must be in [1, 1024], got {threads}")
    model_path = confined_file(folder, manifest.model_file)
    if not model_path.is_file():
        raise RuntimeLoadError(f"{folder}: {manifest.model_file} is missing")
    verify_files(folder, manifest, hashes=verify)
    try:
        tokenizer = Tokenizer.from_file(str(confined_file(folder, "tokenizer.json")))
    except Exception as e:  # tokenizers raises a bare Exception for a bad file
        raise RuntimeLoadError(f"{folder}/tokenizer.json: {str(e).splitlines()[0][:200] if str(e) else e!r}") from e
    if tokenizer.get_vocab_size() > a.vocab_size:
        raise RuntimeLoadError(f"{folder}: the tokenizer has {tokenizer.get_vocab_size()} tokens but "
                               f"architecture.vocab_size is {a.vocab_size}")
    session = open_session(model_path, a, manifest.io, context=ctx, threads=threads, sequences=sequences)
    return Model(folder, manifest, session, tokenizer)
