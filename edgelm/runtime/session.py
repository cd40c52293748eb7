"""The decoder step on ONNX Runtime, with a KV cache allocated once and updated in place.

Needs only onnxruntime and numpy: this is the code that runs on the device. The KV
cache is one OrtValue per layer and kind (float16 or float32, as the model declares), of
capacity ``context`` tokens, bound as both the past input and the present output of the
attention operator, so no step copies or reallocates it. Logits are bound to one preallocated buffer (last position only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RuntimeLoadError
from . import ortops

__all__ = ["DecoderSession", "SessionInfo", "io_names"]


def io_names(num_layers: int) -> dict[str, Any]:
    """The decoder graph's input and output names: what export names them (the manifest's
    ``io``) and what this runtime binds, in one place."""
    return {
        "input_ids": "input_ids",
        "seqlens_k": "seqlens_k",
        "total_sequence_length": "total_sequence_length",
        "past_key": [f"past_key_values.{i}.key" for i in range(num_layers)],
        "past_value": [f"past_key_values.{i}.value" for i in range(num_layers)],
        "present_key": [f"present.{i}.key" for i in range(num_layers)],
        "present_value": [f"present.{i}.value" for i in range(num_layers)],
        "logits": "logits",
    }


def _one_line(e: BaseException, limit: int = 300) -> str:
    """ONNX Runtime's message, last line first (where the operator's own error is), on one line."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    text = " | ".join(reversed(lines)) if lines else type(e).__name__
    return text[:limit]


@dataclass(frozen=True)
class SessionInfo:
    """What the runtime needs of the graph, from the manifest (checked against the graph at load)."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int
    kv_dtype: str = "float32"

    @classmethod
    def of(cls, arch: Any, kv_dtype: str) -> SessionInfo:
        return cls(arch.num_layers, arch.num_kv_heads, arch.head_dim, arch.vocab_size, arch.max_context, kv_dtype)

    def input_names(self) -> list[str]:
        n = io_names(self.num_layers)
        return [n["input_ids"], n["seqlens_k"], n["total_sequence_length"], *n["past_key"], *n["past_value"]]

    def output_names(self) -> list[str]:
        n = io_names(self.num_layers)
        return [n["logits"], *n["present_key"], *n["present_value"]]


def _check_graph(session: Any, info: SessionInfo, path: Path) -> None:
    """The graph's inputs and outputs against the manifest: names, the KV cache's element
    type and its static dimensions, the vocabulary. A folder whose manifest and graph
    disagree would otherwise fail mid-generation, or bind buffers of the wrong size."""
    def fail(why: str) -> RuntimeLoadError:
        return RuntimeLoadError(f"{path}: the model graph and the manifest disagree: {why}")

    ins = {i.name: i for i in session.get_inputs()}
    outs = {o.name: o for o in session.get_outputs()}
    want_in, want_out = info.input_names(), info.output_names()
    missing = [n for n in want_in if n not in ins] + [n for n in want_out if n not in outs]
    if missing:
        raise fail(f"the graph has no {missing[0]} (the manifest's num_layers is {info.num_layers})")
    extra = sorted(set(ins) - set(want_in))
    if extra:
        raise fail(f"the graph needs an input the runtime does not feed: {extra[0]}")
    want_type = {"float32": "tensor(float)", "float16": "tensor(float16)"}.get(info.kv_dtype, info.kv_dtype)
    for name in want_in[3:] + want_out[1:]:
        t = ins[name] if name in ins else outs[name]
        if t.type != want_type:
            raise fail(f"{name} is {t.type} but io.kv_dtype is {info.kv_dtype}")
        shape = list(t.shape)
        for axis, want, field_name in ((1, info.num_kv_heads, "num_kv_heads"), (3, info.head_dim, "head_dim")):
            if len(shape) != 4 or (isinstance(shape[axis], int) and shape[axis] != want):
                raise fail(f"{name} has shape {shape} but architecture.{field_name} is {want}")
    logits = list(outs["logits"].shape)
    if not logits or (isinstance(logits[-1], int) and logits[-1] != info.vocab_size):
        raise fail(f"logits have shape {logits} but architecture.vocab_size is {info.vocab_size}")


class DecoderSession:
    """One sequence (batch 1) on an edgelm ONNX decoder."""

    def __init__(self, onnx_path: Path, info: SessionInfo, *, context: int, threads: int | None = None,
                 spinning: bool = True, needs_ortops: bool = False) -> None:
        import onnxruntime as ort

        if context < 1:
            raise RuntimeLoadError(f"context must be at least 1 token, got {context}")
        if context > info.max_context:
            raise RuntimeLoadError(f"context {context} exceeds the model's maximum of {info.max_context} tokens")
        self.info = info
        self.context = int(context)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or min(4, os.cpu_count() or 1))
        so.inter_op_num_threads = 1
        # ONNX Runtime would print an operator's failure to stderr itself, before edgelm
        # turns it into one line (RuntimeLoadError): only fatal messages from its logger.
        so.log_severity_level = 4
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        ortops.register(so, required=needs_ortops)
        try:
            self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeLoadError(f"{onnx_path}: ONNX Runtime cannot load the model: "
                                   f"{_one_line(e)}") from e
        _check_graph(self.session, info, onnx_path)
        shape = (1, info.num_kv_heads, self.context, info.head_dim)
        # float16 under edgelm's Attention operator, float32 under GroupQueryAttention: the
        # manifest says which (and the graph was checked to agree).
        self.kv_dtype = np.dtype(info.kv_dtype)
        self._cache = []
        self.binding = self.session.io_binding()
        names = io_names(info.num_layers)
        for i in range(info.num_layers):
            for kind in ("key", "value"):
                # np.full touches every page: the cache is committed at load, not at the first
                # long conversation (an app should fail to start, not run out of memory later).
                buf = ort.OrtValue.ortvalue_from_numpy(np.full(shape, 0.0, self.kv_dtype))
                self._cache.append(buf)
                self.binding.bind_ortvalue_input(names[f"past_{kind}"][i], buf)
                self.binding.bind_ortvalue_output(names[f"present_{kind}"][i], buf)
        self._logits = np.zeros((1, 1, info.vocab_size), np.float32)
        self.binding.bind_output("logits", "cpu", 0, np.float32, list(self._logits.shape),
                                 self._logits.ctypes.data)
        self._seqlens = np.zeros(1, np.int32)
        self._total = np.zeros((), np.int32)
        self.length = 0  # tokens in the cache

    @property
    def kv_cache_bytes(self) -> int:
        return (2 * self.info.num_layers * self.info.num_kv_heads * self.context * self.info.head_dim
                * self.kv_dtype.itemsize)

    def reset(self) -> None:
        """Forget the sequence (the cache keeps its memory; stale rows are never read)."""
        self.length = 0

    def rewind(self, length: int) -> None:
        """Keep only the first ``length`` tokens of the sequence (later rows get overwritten)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot rewind to {length} tokens: the cache holds {self.length}")
        self.length = length

    def step(self, token_ids: np.ndarray | list[int], copy: bool = True) -> np.ndarray:
        """Append ``token_ids`` to the sequence and return the next-token logits, ``[vocab]``
        float32: a new array, or with ``copy=False`` a read-only view of the buffer the
        session binds, valid only until the next step (which overwrites it; the decode loops
        use it to skip a copy of the vocabulary per token)."""
        ids = np.ascontiguousarray(np.asarray(token_ids, dtype=np.int64).reshape(1, -1))
        n = ids.shape[1]
        if n == 0:
            raise ValueError("step() needs at least one token")
        if self.length + n > self.context:
            raise RuntimeLoadError(f"sequence of {self.length + n} tokens exceeds the KV cache of "
                                   f"{self.context} tokens (load with a larger context)")
        self._seqlens[0] = self.length + n - 1
        self._total[...] = self.length + n
        self.binding.bind_cpu_input("input_ids", ids)
        self.binding.bind_cpu_input("seqlens_k", self._seqlens)
        self.binding.bind_cpu_input("total_sequence_length", self._total)
        try:
            self.session.run_with_iobinding(self.binding)
        except Exception as e:  # an operator's error (bad tensors in a hostile graph, say)
            raise RuntimeLoadError(f"ONNX Runtime failed while running the model: {_one_line(e)}") from e
        self.length += n
        if copy:
            return self._logits[0, 0].copy()
        view = self._logits[0, 0].view()
        view.flags.writeable = False
        return view
