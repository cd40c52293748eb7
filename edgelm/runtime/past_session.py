"""The decoder step on a graph optimum's ONNX exporter wrote: the past KV cache as inputs,
the present (the past with the new rows appended) as new outputs, an attention mask and
position ids fed each step, logits for every position.

It keeps :class:`~edgelm.runtime.session.DecoderSession`'s interface (step, rewind, fork,
step_batch...), so generate, chat, bench, lookup and parallel samples run on it unchanged.
What it costs against edgelm's own graph is what this path is for measuring: each step
ONNX Runtime allocates a present one row longer and the runtime keeps it as the next past
(the cache is copied once a step, per layer), and the prompt's logits cover every position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Architecture
from ..errors import RuntimeLoadError
from ..manifest import IOSpec
from .session import LOGITS, _one_line, ort_session, step_ids

__all__ = ["PastSession"]


def _check_graph(session: Any, arch: Architecture, io: IOSpec, path: Path) -> None:
    def fail(why: str) -> RuntimeLoadError:
        return RuntimeLoadError(f"{path}: the model graph and the manifest disagree: {why}")

    ins = {i.name: i for i in session.get_inputs()}
    outs = {o.name: o for o in session.get_outputs()}
    fed = [io.input_ids, io.attention_mask, *([io.position_ids] if io.position_ids else []), *io.past_key,
           *io.past_value]
    missing = [n for n in fed if n not in ins] + [n for n in (LOGITS, *io.present_key, *io.present_value)
                                                   if n not in outs]
    if missing:
        raise fail(f"the graph has no {missing[0]}")
    extra = sorted(set(ins) - set(fed))
    if extra:
        raise fail(f"the graph needs an input the runtime does not feed: {extra[0]}")
    if len(io.past_key) != arch.num_layers:
        raise fail(f"io names {len(io.past_key)} layers' caches but architecture.num_layers is {arch.num_layers}")
    for name in (*io.past_key, *io.past_value):
        t = ins[name]
        shape = list(t.shape)
        if t.type != "tensor(float)":
            raise fail(f"{name} is {t.type}; this runtime feeds float32 caches")
        for axis, want, field_name in ((1, arch.num_kv_heads, "num_kv_heads"), (3, arch.head_dim, "head_dim")):
            if len(shape) != 4 or (isinstance(shape[axis], int) and shape[axis] != want):
                raise fail(f"{name} has shape {shape} but architecture.{field_name} is {want}")
    logits = list(outs[LOGITS].shape)
    if len(logits) != 3 or (isinstance(logits[-1], int) and logits[-1] != arch.vocab_size):
        raise fail(f"logits have shape {logits} but architecture.vocab_size is {arch.vocab_size}")


class PastSession:
    """One sequence, or up to ``sequences`` in lockstep, on a past-in/present-out graph."""

    max_step = None  # any number of tokens in one pass

    def __init__(self, onnx_path: Path, arch: Architecture, io: IOSpec, *, context: int,
                 threads: int | None = None, spinning: bool = True, sequences: int = 1) -> None:
        self.arch, self.io = arch, io
        self.context = int(context)
        self.sequences = sequences
        self.session = ort_session(onnx_path, arch, io, context=context, threads=threads, spinning=spinning,
                                   sequences=sequences)
        _check_graph(self.session, arch, io, onnx_path)
        self.kv_dtype = np.dtype(np.float32)
        self._outputs = [LOGITS, *io.present_key, *io.present_value]
        self.reset()

    @property
    def kv_cache_bytes(self) -> int:
        """The most the past grows to: ``context`` rows of every layer for each sequence
        (allocated as it grows, not at load; a step holds the past and the present)."""
        return self.arch.kv_cache_bytes(self.context, "float32", self.sequences)

    def reset(self) -> None:
        a = self.arch
        self._past = [np.zeros((1, a.num_kv_heads, 0, a.head_dim), np.float32) for _ in range(2 * a.num_layers)]
        self.length = 0
        self.batch = 1

    def _set_length(self, length: int, rows: list[int] | None = None) -> None:
        self._past = [np.ascontiguousarray(p[rows if rows is not None else slice(None), :, :length])
                      for p in self._past]
        self.length = length

    def can_rewind(self, length: int) -> bool:
        return 0 <= length <= self.length

    def rewind(self, length: int) -> None:
        if not self.can_rewind(length):
            raise ValueError(f"cannot rewind to {length} tokens: the cache holds {self.length}")
        if length != self.length:
            self._set_length(length)

    def fork(self, n: int) -> None:
        if self.batch != 1:
            raise ValueError("fork() needs a single sequence in the cache")
        if not 1 <= n <= self.sequences:
            raise RuntimeLoadError(f"{n} sequences do not fit this session: it was loaded for "
                                   f"{self.sequences} (load with sequences={n} or more)")
        self._past = [np.repeat(p, n, axis=0) for p in self._past]
        self.batch = n

    def keep(self, slots: list[int]) -> None:
        if not slots or any(not 0 <= i < self.batch for i in slots) or slots != sorted(set(slots)):
            raise ValueError(f"slots must be distinct, increasing and below {self.batch}, got {slots}")
        self._set_length(self.length, slots)
        self.batch = len(slots)

    def join(self) -> None:
        if self.batch != 1:
            self._set_length(self.length, [0])
        self.batch = 1

    def _run(self, ids: np.ndarray) -> np.ndarray:
        batch, n = ids.shape
        if self.length + n > self.context:
            raise RuntimeLoadError(f"sequence of {self.length + n} tokens exceeds the KV cache of "
                                   f"{self.context} tokens (load with a larger context)")
        io = self.io
        feeds: dict[str, np.ndarray] = {io.input_ids: ids,
                                        io.attention_mask: np.ones((batch, self.length + n), np.int64)}
        if io.position_ids:
            feeds[io.position_ids] = np.broadcast_to(np.arange(self.length, self.length + n, dtype=np.int64),
                                                     (batch, n)).copy()
        names = [*io.past_key, *io.past_value]
        feeds.update(zip(names, self._past, strict=True))
        try:
            out = self.session.run(self._outputs, feeds)
        except Exception as e:  # an operator's error (bad tensors in a hostile graph, say)
            raise RuntimeLoadError(f"ONNX Runtime failed while running the model: {_one_line(e)}") from e
        logits, self._past = out[0], list(out[1:])
        self.length += n
        return logits

    def step_batch(self, token_ids: np.ndarray | list[int]) -> np.ndarray:
        ids = np.ascontiguousarray(np.asarray(token_ids, dtype=np.int64).reshape(-1, 1))
        if ids.shape[0] != self.batch:
            raise ValueError(f"step_batch() needs one token for each of the {self.batch} sequences, got {ids.shape[0]}")
        view = self._run(ids)[:, -1]
        view.flags.writeable = False
        return view

    def step(self, token_ids: np.ndarray | list[int], copy: bool = True, rows: int = 1) -> np.ndarray:
        ids = step_ids(token_ids, self.batch, rows)
        n = ids.shape[1]
        logits = self._run(ids)[0]
        out = logits[-1] if rows == 1 else logits[n - rows:]
        if copy:
            return out.copy()
        out.flags.writeable = False
        return out
