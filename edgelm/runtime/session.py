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

import numpy as np

from ..errors import RuntimeLoadError
from . import ortops

__all__ = ["DecoderSession", "SessionInfo"]


@dataclass(frozen=True)
class SessionInfo:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int


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
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        ortops.register(so, required=needs_ortops)
        try:
            self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeLoadError(f"{onnx_path}: ONNX Runtime cannot load the model: {str(e)[:300]}") from e
        shape = (1, info.num_kv_heads, self.context, info.head_dim)
        # float16 under edgelm's Attention operator, float32 under GroupQueryAttention: the
        # model's own input type decides.
        types = {i.name: i.type for i in self.session.get_inputs()}
        self.kv_dtype = np.dtype(np.float16 if types.get("past_key_values.0.key") == "tensor(float16)" else np.float32)
        self._cache = []
        self.binding = self.session.io_binding()
        for i in range(info.num_layers):
            for kind in ("key", "value"):
                # np.full touches every page: the cache is committed at load, not at the first
                # long conversation (an app should fail to start, not run out of memory later).
                buf = ort.OrtValue.ortvalue_from_numpy(np.full(shape, 0.0, self.kv_dtype))
                self._cache.append(buf)
                self.binding.bind_ortvalue_input(f"past_key_values.{i}.{kind}", buf)
                self.binding.bind_ortvalue_output(f"present.{i}.{kind}", buf)
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

    def step(self, token_ids: np.ndarray | list[int]) -> np.ndarray:
        """Append ``token_ids`` to the sequence and return the next-token logits (a view,
        overwritten by the next call)."""
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
        self.session.run_with_iobinding(self.binding)
        self.length += n
        return self._logits[0, 0]
