"""The decoder step on ONNX Runtime, with a KV cache allocated once and updated in place.

Needs only onnxruntime and numpy: this is the code that runs on the device. The KV
cache is one OrtValue per layer and kind (float16 or float32, as the model declares), of
capacity ``context`` tokens, bound as both the past input and the present output of the
attention operator, so no step copies or reallocates it. Logits are bound to one preallocated
buffer: the last position only, or the last few when drafted tokens are verified.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Architecture
from ..errors import RuntimeLoadError
from ..manifest import IOSpec
from . import ortops
from .lookup import MAX_DRAFT

LOGITS = "logits"
#: The most positions one step returns logits for: a pass verifying the longest draft.
MAX_LOGIT_ROWS = MAX_DRAFT + 1
_ORT_TYPES = {"float32": "tensor(float)", "float16": "tensor(float16)"}

__all__ = ["DecoderSession", "input_names", "output_names"]


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


class DecoderSession:
    """One sequence (batch 1) on an edgelm ONNX decoder, as the manifest describes it: the
    architecture sizes the KV cache; the IOSpec names the tensors to bind, their element
    type and the operator domains to register."""

    def __init__(self, onnx_path: Path, arch: Architecture, io: IOSpec, *, context: int,
                 threads: int | None = None, spinning: bool = True) -> None:
        import onnxruntime as ort

        if context < 1:
            raise RuntimeLoadError(f"context must be at least 1 token, got {context}")
        if context > arch.max_context:
            raise RuntimeLoadError(f"context {context} exceeds the model's maximum of {arch.max_context} tokens")
        self.arch, self.io = arch, io
        self.context = int(context)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or min(4, os.cpu_count() or 1))
        so.inter_op_num_threads = 1
        # ONNX Runtime would print an operator's failure to stderr itself, before edgelm
        # turns it into one line (RuntimeLoadError): only fatal messages from its logger.
        so.log_severity_level = 4
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        ortops.register(so, required=ortops.DOMAIN in io.operator_domains)
        try:
            self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeLoadError(f"{onnx_path}: ONNX Runtime cannot load the model: "
                                   f"{_one_line(e)}") from e
        _check_graph(self.session, arch, io, onnx_path)
        shape = arch.kv_cache_shape(self.context)
        # float16 under edgelm's Attention operator, float32 under GroupQueryAttention: the
        # manifest says which (and the graph was checked to agree).
        self.kv_dtype = np.dtype(io.kv_dtype.value)
        self._cache = []
        self.binding = self.session.io_binding()
        for past, present in ((io.past_key, io.present_key), (io.past_value, io.present_value)):
            for past_name, present_name in zip(past, present, strict=True):
                # np.full touches every page: the cache is committed at load, not at the first
                # long conversation (an app should fail to start, not run out of memory later).
                buf = ort.OrtValue.ortvalue_from_numpy(np.full(shape, 0.0, self.kv_dtype))
                self._cache.append(buf)
                self.binding.bind_ortvalue_input(past_name, buf)
                self.binding.bind_ortvalue_output(present_name, buf)
        self._logits = np.zeros((MAX_LOGIT_ROWS, arch.vocab_size), np.float32)
        self._rows = np.ones(1, np.int64)
        self._bind_logits(1)
        self._seqlens = np.zeros(1, np.int32)
        self._total = np.zeros((), np.int32)
        self.length = 0  # tokens in the cache

    def _bind_logits(self, rows: int) -> None:
        self._rows[0] = rows
        self.binding.bind_output(LOGITS, "cpu", 0, np.float32, [1, rows, self.arch.vocab_size],
                                 self._logits.ctypes.data)

    @property
    def kv_cache_bytes(self) -> int:
        return self.arch.kv_cache_bytes(self.context, self.io.kv_dtype)

    def reset(self) -> None:
        """Forget the sequence (the cache keeps its memory; stale rows are never read)."""
        self.length = 0

    def rewind(self, length: int) -> None:
        """Keep only the first ``length`` tokens of the sequence (later rows get overwritten)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} tokens: the cache holds {self.length}")
        self.length = length

    def step(self, token_ids: np.ndarray | list[int], copy: bool = True, rows: int = 1) -> np.ndarray:
        """Append ``token_ids`` to the sequence and return the next-token logits, ``[vocab]``
        float32 (with ``rows`` > 1, ``[rows, vocab]``: after each of the last ``rows`` tokens,
        as a verification of drafted tokens needs): a new array, or with ``copy=False`` a
        read-only view of the buffer the session binds, valid only until the next step
        (which overwrites it; the decode loops use it to skip a copy of the vocabulary per
        token)."""
        ids = np.ascontiguousarray(np.asarray(token_ids, dtype=np.int64).reshape(1, -1))
        n = ids.shape[1]
        if n == 0:
            raise ValueError("step() needs at least one token")
        if not 1 <= rows <= min(n, MAX_LOGIT_ROWS):
            raise ValueError(f"rows must be in [1, {min(n, MAX_LOGIT_ROWS)}] for a step of {n} tokens, got {rows}")
        if rows != self._rows[0]:
            self._bind_logits(rows)
        if self.length + n > self.context:
            raise RuntimeLoadError(f"sequence of {self.length + n} tokens exceeds the KV cache of "
                                   f"{self.context} tokens (load with a larger context)")
        self._seqlens[0] = self.length + n - 1
        self._total[...] = self.length + n
        self.binding.bind_cpu_input(self.io.input_ids, ids)
        self.binding.bind_cpu_input(self.io.seqlens_k, self._seqlens)
        self.binding.bind_cpu_input(self.io.total_sequence_length, self._total)
        self.binding.bind_cpu_input(self.io.logits_rows, self._rows)
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as e:  # an operator's error (bad tensors in a hostile graph, say)
            raise RuntimeLoadError(f"ONNX Runtime failed while running the model: {_one_line(e)}") from e
        self.length += n
        out = self._logits[0] if rows == 1 else self._logits[:rows]
        if copy:
            return out.copy()
        view = out.view()
        view.flags.writeable = False
        return view
