"""``edgelm.load(DIR)`` -> :class:`Model`: generation on an exported model folder.

Reads the manifest (never re-derives the architecture), sizes the KV cache by the
context the caller asks for (default 2,048 tokens, not the model's maximum), and runs
prefill + decode with the compiled sampler. Only onnxruntime, numpy, tokenizers and the
kernels are needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from ..errors import RuntimeLoadError
from ..manifest import Manifest, confined_file, read_manifest, verify_files
from ..sampling import Sampler, SamplingParams
from .chat import load_chat_template, render_chat
from .session import DecoderSession

__all__ = ["load", "Model", "DEFAULT_CONTEXT"]

DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class _Stop:
    eos_ids: frozenset[int]
    strings: tuple[str, ...]


class Model:
    def __init__(self, folder: Path, manifest: Manifest, session: DecoderSession, tokenizer: Any) -> None:
        self.folder = folder
        self.manifest = manifest
        self.session = session
        self.tokenizer = tokenizer
        self.chat_template = load_chat_template(folder)
        self.eos_ids = frozenset(manifest.generation.eos_token_id)
        self.sampler = Sampler(manifest.architecture.vocab_size)
        self._cached_ids: list[int] = []  # the tokens whose keys and values the cache holds
        self.reused_tokens = 0  # prompt tokens the last generate() took from the cache

    @property
    def context(self) -> int:
        return self.session.context

    @property
    def kv_cache_bytes(self) -> int:
        return self.session.kv_cache_bytes

    def encode(self, prompt: str | Sequence[dict[str, Any]]) -> list[int]:
        text = prompt if isinstance(prompt, str) else render_chat(self.chat_template, list(prompt))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RuntimeLoadError("the prompt is not valid text (it holds unpaired surrogates)") from None
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    @overload
    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = ...,
                 sampling: SamplingParams | None = ..., stop: Sequence[str] = ..., stream: Literal[False] = ...,
                 truncate: bool = ...) -> str: ...

    @overload
    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = ...,
                 sampling: SamplingParams | None = ..., stop: Sequence[str] = ..., *, stream: Literal[True],
                 truncate: bool = ...) -> Iterator[str]: ...

    def generate(self, prompt: str | Sequence[dict[str, Any]], max_new_tokens: int = 256,
                 sampling: SamplingParams | None = None, stop: Sequence[str] = (), stream: bool = False,
                 truncate: bool = False) -> str | Iterator[str]:
        """Generate a reply. ``prompt`` is a string or chat messages (the folder's chat
        template is applied). With ``stream=True`` returns an iterator of text pieces."""
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
        pieces = self._pieces(ids, max_new_tokens, params, _Stop(self.eos_ids, tuple(stop)))
        return pieces if stream else "".join(pieces)

    def _prefill(self, ids: list[int]) -> np.ndarray:
        """Step the prompt, reusing the cached prefix it shares with what the cache holds
        (a chat's earlier turns, a repeated system prompt): the cache is rewound to the
        common prefix and only the rest is computed."""
        held = self._cached_ids
        common = 0
        limit = min(len(held), len(ids) - 1, self.session.length)  # step at least one token
        while common < limit and held[common] == ids[common]:
            common += 1
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

    def _pieces(self, ids: list[int], max_new_tokens: int, params: SamplingParams, stop: _Stop) -> Iterator[str]:
        self.sampler.params = params
        self.sampler.reseed(params.seed)
        budget = min(max_new_tokens, self.context - len(ids))  # the cache bounds it, not the caller
        history = np.empty(len(ids) + budget, np.int64)
        history[:len(ids)] = ids
        n_hist = len(ids)
        logits = self._prefill(ids)
        out: list[int] = []
        emitted = 0
        for _ in range(budget):
            tok = self.sampler.sample(logits, history[:n_hist])
            if tok in stop.eos_ids:
                break
            out.append(tok)
            history[n_hist] = tok
            n_hist += 1
            text = self.tokenizer.decode(out)
            hit = min((text.find(s) for s in stop.strings if s and s in text), default=-1)
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
            if len(out) < budget and self.session.length < self.context:
                logits = self.session.step([tok], copy=False)
                self._cached_ids.append(tok)
            else:
                break
        text = self.tokenizer.decode(out)
        if len(text) > emitted and not any(s and s in text for s in stop.strings):
            yield text[emitted:]


def load(folder: str | Path, threads: int | None = None, context: int | None = None, *,
         verify: bool = False) -> Model:
    """Load an exported model folder; ``context`` sizes the KV cache (default 2,048).

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
    session = DecoderSession(model_path, a, manifest.io, context=ctx, threads=threads)
    return Model(folder, manifest, session, tokenizer)
