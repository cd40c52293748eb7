"""The decoder step on ONNX Runtime, with a KV cache allocated once and updated in place.

Needs only onnxruntime and numpy: this is the code that runs on the device. The KV
cache is one OrtValue per layer and kind (float16 or float32, as the model declares), of
capacity ``context`` tokens, bound as both the past input and the present output of the
attention operator, so no step copies or reallocates it. Logits are bound to one preallocated
buffer: the last position only, or the last few when drafted tokens are verified.

A window layer (Gemma 3's sliding-window attention) under edgelm's operator keeps a ring of
its window's rows and RING_SLACK more instead of the whole context: a prompt longer than the
slack is then computed in chunks, and a rewind reaches back at most RING_SLACK + 1 tokens
(the prompt cache falls back to recomputing beyond that).

A session loaded for ``sequences`` > 1 holds that many caches side by side (the batch
dimension): the prompt is computed once for sequence 0, :meth:`DecoderSession.fork` copies
its rows to the others, and :meth:`DecoderSession.step_batch` then advances all of them by
one token in one pass over the weights (parallel sampling: best-of-n, self-consistency).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Architecture, ring_cache
from ..errors import RuntimeLoadError
from ..manifest import IOSpec
from . import ortops
from .lookup import MAX_DRAFT

LOGITS = "logits"
#: The most positions one step returns logits for: a pass verifying the longest draft.
MAX_LOGIT_ROWS = MAX_DRAFT + 1
#: The most sequences one session holds (the Attention operator's batch limit is 256).
MAX_SEQUENCES = 64
_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}

__all__ = ["DecoderSession", "open_session", "input_names", "output_names"]


def input_names(io: IOSpec) -> list[str]:
    """The graph inputs the session feeds, in the manifest's names."""
    return [io.input_ids, io.seqlens_k, io.total_sequence_length, io.logits_rows, *io.past_key, *io.past_value]


def output_names(io: IOSpec) -> list[str]:
    """The graph outputs the session binds: the logits first, then the present K and V."""
    return [LOGITS, *io.present_key, *io.present_value]


def _one_line(e: BaseException, limit: int = 300) -> str:
    """ONNX Runtime's message, last line first (where the operator's own error is), on one line."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    text = " | ".join(reversed(lines)) if lines else type(e).__name__
    return text[:limit]


def _check_graph(session: Any, arch: Architecture, io: IOSpec, path: Path) -> None:
    """The graph's inputs and outputs against the manifest: names, the KV cache's element
    type and its static dimensions, the vocabulary. A folder whose manifest and graph
    disagree would otherwise fail mid-generation, or bind buffers of the wrong size."""
    def fail(why: str) -> RuntimeLoadError:
        return RuntimeLoadError(f"{path}: the model graph and the manifest disagree: {why}")

    ins = {i.name: i for i in session.get_inputs()}
    outs = {o.name: o for o in session.get_outputs()}
    want_in, want_out = input_names(io), output_names(io)
    missing = [n for n in want_in if n not in ins] + [n for n in want_out if n not in outs]
    if missing:
        raise fail(f"the graph has no {missing[0]} (the manifest's num_layers is {arch.num_layers})")
    extra = sorted(set(ins) - set(want_in))
    if extra:
        raise fail(f"the graph needs an input the runtime does not feed: {extra[0]}")
    want_type = _ORT_TYPES[io.kv_dtype.value]
    for name in want_in[4:] + want_out[1:]:
        t = ins[name] if name in ins else outs[name]
        if t.type != want_type:
            raise fail(f"{name} is {t.type} but io.kv_dtype is {io.kv_dtype.value}")
        shape = list(t.shape)
        for axis, want, field_name in ((1, arch.num_kv_heads, "num_kv_heads"), (3, arch.head_dim, "head_dim")):
            if len(shape) != 4 or (isinstance(shape[axis], int) and shape[axis] != want):
                raise fail(f"{name} has shape {shape} but architecture.{field_name} is {want}")
    logits = list(outs[LOGITS].shape)
    if not logits or (isinstance(logits[-1], int) and logits[-1] != arch.vocab_size):
        raise fail(f"logits have shape {logits} but architecture.vocab_size is {arch.vocab_size}")


def ort_session(onnx_path: Path, arch: Architecture, io: IOSpec, *, context: int, threads: int | None,
                spinning: bool, sequences: int) -> Any:
    """The checks both sessions make of their arguments, and the ONNX Runtime session: all
    optimisations, ``threads`` intra-op threads, edgelm's operators registered (required
    when the manifest lists their domain), its failure one RuntimeLoadError."""
    import onnxruntime as ort

    if isinstance(sequences, bool) or not isinstance(sequences, int) or not 1 <= sequences <= MAX_SEQUENCES:
        raise RuntimeLoadError(f"sequences must be an integer in [1, {MAX_SEQUENCES}], got {sequences!r}")
    if context < 1:
        raise RuntimeLoadError(f"context must be at least 1 token, got {context}")
    if context > arch.max_context:
        raise RuntimeLoadError(f"context {context} exceeds the model's maximum of {arch.max_context} tokens")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or min(4, os.cpu_count() or 1))
    so.inter_op_num_threads = 1
    # ONNX Runtime would print an operator's failure to stderr itself, before edgelm turns
    # it into one line (RuntimeLoadError): only fatal messages from its logger.
    so.log_severity_level = 4
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    ortops.register(so, required=ortops.DOMAIN in io.operator_domains)
    try:
        return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise RuntimeLoadError(f"{onnx_path}: ONNX Runtime cannot load the model: {_one_line(e)}") from e


def step_ids(token_ids: np.ndarray | list[int], batch: int, rows: int) -> np.ndarray:
    """step()'s tokens as a [1, n] int64 array, checked: at least one, one sequence in the
    session, ``rows`` in [1, min(n, MAX_LOGIT_ROWS)]."""
    ids = np.ascontiguousarray(np.asarray(token_ids, dtype=np.int64).reshape(1, -1))
    n = ids.shape[1]
    if n == 0:
        raise ValueError("step() needs at least one token")
    if batch != 1:
        raise ValueError(f"step() steps one sequence, but {batch} are forked (use step_batch)")
    if not 1 <= rows <= min(n, MAX_LOGIT_ROWS):
        raise ValueError(f"rows must be in [1, {min(n, MAX_LOGIT_ROWS)}] for a step of {n} tokens, got {rows}")
    return ids


class DecoderSession:
    """One sequence, or up to ``sequences`` in lockstep, on an edgelm ONNX decoder, as the
    manifest describes it: the architecture sizes the KV cache; the IOSpec names the
    tensors to bind, their element type and the operator domains to register."""

    def __init__(self, onnx_path: Path, arch: Architecture, io: IOSpec, *, context: int,
                 threads: int | None = None, spinning: bool = True, sequences: int = 1) -> None:
        self.arch, self.io = arch, io
        self.context = int(context)
        self.session = ort_session(onnx_path, arch, io, context=context, threads=threads, spinning=spinning,
                                   sequences=sequences)
        _check_graph(self.session, arch, io, onnx_path)
        self.sequences = sequences
        # float16 under edgelm's Attention operator, float32 under GroupQueryAttention: the
        # manifest says which (and the graph was checked to agree). np.full touches every
        # page: the cache is committed at load, not at the first long conversation (an app
        # should fail to start, not run out of memory later). A window layer's ring under
        # edgelm's operator has fewer rows than the context (arch.kv_rows).
        self.kv_dtype = np.dtype(io.kv_dtype.value)
        ring = ring_cache(io.kv_dtype)
        rows = [arch.kv_rows(i, self.context, ring) for i in range(arch.num_layers)]
        self._caches = [np.full(arch.kv_cache_shape(rows[i % arch.num_layers], sequences), 0.0, self.kv_dtype)
                        for i in range(2 * arch.num_layers)]
        # (window, rows) of the rings that wrap: each step fits rows - window + 1 tokens, and
        # the oldest position each ring still holds bounds a rewind.
        self._rings = sorted({(arch.window_of(i), r) for i, r in enumerate(rows) if r < self.context})
        self.max_step = min((r - w + 1 for w, r in self._rings), default=None)  # once a ring has wrapped
        self._oldest = [0] * len(self._rings)
        self._pass_rings = self._rings  # what bounds a pass (a test gives a whole cache a ring's passes)
        self._bindings: dict[int, Any] = {}
        self._logits = np.zeros((max(MAX_LOGIT_ROWS, sequences), arch.vocab_size), np.float32)
        self._rows = np.ones(1, np.int64)
        self._logits_shape = (0, 0)  # (batch, rows) the logits buffer is bound as
        self._seqlens = np.zeros(sequences, np.int32)
        self._total = np.zeros((), np.int32)
        self.binding = self._binding(1)
        self._bind_logits(1, 1)
        self.batch = 1  # sequences being stepped: 1 until fork()
        self.length = 0  # tokens in the cache (of each sequence)

    def _binding(self, batch: int) -> Any:
        """The IO binding of the first ``batch`` sequences' caches (views of one buffer each,
        bound as past and present): made once per batch size."""
        import onnxruntime as ort

        if batch not in self._bindings:
            b = self.session.io_binding()
            names = [*zip(self.io.past_key, self.io.present_key, strict=True),
                     *zip(self.io.past_value, self.io.present_value, strict=True)]
            for (past_name, present_name), cache in zip(names, self._caches, strict=True):
                buf = ort.OrtValue.ortvalue_from_numpy(cache[:batch])  # shares the cache's memory
                b.bind_ortvalue_input(past_name, buf)
                b.bind_ortvalue_output(present_name, buf)
            self._bindings[batch] = b
        return self._bindings[batch]

    def _bind_logits(self, batch: int, rows: int) -> None:
        if (batch, rows) == self._logits_shape:
            return
        self.binding = self._binding(batch)
        self._rows[0] = rows
        self._logits_shape = (batch, rows)
        self.binding.bind_output(LOGITS, "cpu", 0, np.float32, [batch, rows, self.arch.vocab_size],
                                 self._logits.ctypes.data)

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes of the caches allocated (arch.kv_cache_bytes, which the memory model counts)."""
        return sum(c.nbytes for c in self._caches)

    def reset(self) -> None:
        """Forget the sequence (the cache keeps its memory; stale rows are never read)."""
        self.length = 0
        self.batch = 1
        self._oldest = [0] * len(self._rings)

    def fork(self, n: int) -> None:
        """Make ``n`` sequences of the one in the cache: its rows are copied to sequences
        1 .. n-1, and :meth:`step_batch` then steps all ``n``."""
        if self.batch != 1:
            raise ValueError("fork() needs a single sequence in the cache")
        if not 1 <= n <= self.sequences:
            raise RuntimeLoadError(f"{n} sequences do not fit this session: it was loaded for "
                                   f"{self.sequences} (load with sequences={n} or more)")
        for cache in self._caches:
            cache[1:n, :, :self.length] = cache[0:1, :, :self.length]  # a ring's rows: all of them
        self.batch = n

    def keep(self, slots: list[int]) -> None:
        """Keep only the sequences at ``slots`` (in that order, as sequences 0 ..), dropping
        the rest from later steps: a finished sample stops costing a row."""
        if not slots or any(not 0 <= i < self.batch for i in slots) or slots != sorted(set(slots)):
            raise ValueError(f"slots must be distinct, increasing and below {self.batch}, got {slots}")
        for j, i in enumerate(slots):
            if i != j:
                for cache in self._caches:
                    cache[j, :, :self.length] = cache[i, :, :self.length]
        self.batch = len(slots)

    def join(self) -> None:
        """Back to one sequence: sequence 0 (the rows forked from the prompt are every
        sequence's, so rewinding to the prompt after sampling keeps the prompt)."""
        self.batch = 1

    def step_batch(self, token_ids: np.ndarray | list[int]) -> np.ndarray:
        """Append one token to each of the forked sequences (``token_ids[i]`` to sequence i)
        in one pass, and return their next-token logits, ``[batch, vocab]``: a read-only
        view of the bound buffer, valid until the next step."""
        ids = np.ascontiguousarray(np.asarray(token_ids, dtype=np.int64).reshape(-1, 1))
        if ids.shape[0] != self.batch:
            raise ValueError(f"step_batch() needs one token for each of the {self.batch} sequences, got {ids.shape[0]}")
        self._run(ids, 1)
        view = self._logits[:self.batch].view()
        view.flags.writeable = False
        return view

    def _pass_size(self) -> int | None:
        """The most tokens the next pass may append: up to each ring's end, or once it
        wraps, as many as leave the first query's window unwritten (None: any number)."""
        return min((max(r - w + 1, r - self.length) for w, r in self._pass_rings), default=None)

    def _run(self, ids: np.ndarray, rows: int) -> None:
        """Step ``ids`` ([batch, n]) and leave the logits of the last ``rows`` positions in
        the bound buffer: in one pass, or in several where a window layer's ring would
        otherwise overwrite keys the step needs (the last pass holds every row asked for)."""
        batch, n = ids.shape
        if self.length + n > self.context:
            raise RuntimeLoadError(f"sequence of {self.length + n} tokens exceeds the KV cache of "
                                   f"{self.context} tokens (load with a larger context)")
        while (size := self._pass_size()) is not None and ids.shape[1] > size:
            self._bind_logits(batch, 1)
            self._pass(ids[:, :min(size, ids.shape[1] - rows)])
            ids = ids[:, min(size, ids.shape[1] - rows):]
        self._bind_logits(batch, rows)
        self._pass(ids)

    def _pass(self, ids: np.ndarray) -> None:
        batch, n = ids.shape
        ids = np.ascontiguousarray(ids)
        seqlens = self._seqlens[:batch]
        seqlens[:] = self.length + n - 1
        self._total[...] = self.length + n
        self.binding.bind_cpu_input(self.io.input_ids, ids)
        self.binding.bind_cpu_input(self.io.seqlens_k, seqlens)
        self.binding.bind_cpu_input(self.io.total_sequence_length, self._total)
        self.binding.bind_cpu_input(self.io.logits_rows, self._rows)
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as e:  # an operator's error (bad tensors in a hostile graph, say)
            raise RuntimeLoadError(f"ONNX Runtime failed while running the model: {_one_line(e)}") from e
        self.length += n
        for j, (_, r) in enumerate(self._rings):
            self._oldest[j] = max(self._oldest[j], self.length - r)

    def can_rewind(self, length: int) -> bool:
        """Whether :meth:`rewind` to ``length`` keeps every key the next query needs: always,
        but for a window layer's ring that has since overwritten them."""
        if not 0 <= length <= self.length:
            return False
        return length == 0 or all(max(0, length - w + 1) >= old
                                  for (w, _), old in zip(self._rings, self._oldest, strict=True))

    def rewind(self, length: int) -> None:
        """Keep only the first ``length`` tokens of the sequence (later rows get overwritten)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} tokens: the cache holds {self.length}")
        if not self.can_rewind(length):
            raise ValueError(f"cannot rewind to {length} tokens: a window layer's ring no longer holds the keys "
                             f"they need (it reaches back {min(r - w for w, r in self._rings) + 1} tokens)")
        self.length = length
        if length == 0:
            self._oldest = [0] * len(self._rings)

    def step(self, token_ids: np.ndarray | list[int], copy: bool = True, rows: int = 1) -> np.ndarray:
        """Append ``token_ids`` to the sequence and return the next-token logits, ``[vocab]``
        float32 (with ``rows`` > 1, ``[rows, vocab]``: after each of the last ``rows`` tokens,
        as a verification of drafted tokens needs): a new array, or with ``copy=False`` a
        read-only view of the buffer the session binds, valid only until the next step
        (which overwrites it; the decode loops use it to skip a copy of the vocabulary per
        token)."""
        ids = step_ids(token_ids, self.batch, rows)
        self._run(ids, rows)
        out = self._logits[0] if rows == 1 else self._logits[:rows]
        if copy:
            return out.copy()
        view = out.view()
        view.flags.writeable = False
        return view


def open_session(onnx_path: Path, arch: Architecture, io: IOSpec, **kw: Any) -> Any:
    """The session for the graph the manifest describes: edgelm's (a cache bound in place,
    :class:`DecoderSession`) or optimum's (past in, present out: ``PastSession``), with the
    same interface."""
    if io.kv_shared_buffer:
        return DecoderSession(onnx_path, arch, io, **kw)
    from .past_session import PastSession

    return PastSession(onnx_path, arch, io, **kw)
