"""Memory model: peak DRAM of the edgelm runtime for a model at a context length.

    peak = runtime + tokenizer + weights x residency(quant) + KV cache(context) + prefill workspace

* KV cache: 2 x layers x KV heads x head dim x context x 2 bytes (float16, under edgelm's
  Attention operator: quantized folders on the edgelm kernel) or 4 (float32, under
  GroupQueryAttention: fp32 and MatMulNBits folders; the manifest's ``io.kv_dtype``
  says which), exact: the runtime allocates and touches it at load.
* weights: the manifest's bytes by kind, times a residency factor per quantization and
  linear kernel (the manifest's ``quantization.linear_kernel``): with MatMulNBits ONNX
  Runtime keeps each initializer and a prepacked copy of it; edgelm's BlockQuantMatMul
  reads the memory-mapped initializers as they are. The factors were measured on the
  random-weight preset mobilellm-125m at context 2048 (not on SmolLM2, which the tests
  then check against): BlockQuantMatMul int4 0.645, int8 0.738; MatMulNBits int4 1.744,
  int8 1.518; fp32 1.191.
* runtime: CPython 3.11 + numpy + onnxruntime + tokenizers imported, measured 50.9 MB
  (x86-64 Linux; a native app on a phone needs less: the profile can override it).
* tokenizer: 2.3 MB + 23.5 x the size of tokenizer.json (intercept from the byte-level
  tokenizer, slope from SmolLM2's 49k-entry BPE: the only real tokenizer at hand).
* prefill workspace for a prompt of S tokens: 14.3 MB + 1.886 x S x 4 x (2 hidden + QKV +
  3 FFN) + heads x S^2 x 4 (one layer's attention probabilities); fitted on
  mobilellm-125m prompts of 472 and 720 tokens with ONNX Runtime's default arena.

All figures are bytes. ``benchmarks/memory_model.py`` prints estimate and measurement
side by side; ``tests/profiler/test_memory.py`` (a slow test) holds them within 15%.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..arch import Architecture, KVDtype
from ..manifest import Quant, kv_dtype_for

__all__ = ["MemoryEstimate", "estimate_memory", "RESIDENCY", "RESIDENCY_MATMULNBITS", "RUNTIME_BYTES", "weights_bytes_for",
           "measure_peak_rss"]

_MEASURE = r"""
import sys
import edgelm
m = edgelm.load(sys.argv[1], threads=2, context=int(sys.argv[2]))
prompt = m.encode("Once upon a time, in a village by the sea, " * 40)[:int(sys.argv[3])]
m.session.step(prompt, copy=False)
for _ in range(16):
    m.session.step([1], copy=False)
from edgelm.devices.rss import peak_rss_bytes
print(peak_rss_bytes())
"""


def measure_peak_rss(folder: str, context: int, prompt_tokens: int = 128) -> int:
    """Peak RSS (bytes) of a fresh process that loads ``folder`` with ``context`` tokens of
    KV cache, prefills a prompt and decodes 16 tokens (Linux: VmHWM)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _MEASURE, str(folder), str(context), str(prompt_tokens)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout)

RESIDENCY = {Quant.INT4: 0.645, Quant.INT8: 0.738, Quant.FP32: 1.191}  # the default kernel (edgelm)
RESIDENCY_MATMULNBITS = {Quant.INT4: 1.744, Quant.INT8: 1.518, Quant.FP32: 1.191}
RUNTIME_BYTES = 50.9e6
TOKENIZER_BASE_BYTES = 2.3e6
TOKENIZER_PER_JSON_BYTE = 23.5
WORKSPACE_BASE_BYTES = 14.3e6
WORKSPACE_PER_TOKEN_FACTOR = 1.886


@dataclass(frozen=True)
class MemoryEstimate:
    weights_file_bytes: float
    weights_resident_bytes: float
    kv_cache_bytes: float
    workspace_bytes: float
    runtime_bytes: float
    tokenizer_bytes: float
    context: int
    prompt_tokens: int

    @property
    def peak_bytes(self) -> float:
        return (self.weights_resident_bytes + self.kv_cache_bytes + self.workspace_bytes + self.runtime_bytes
                + self.tokenizer_bytes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak_bytes"] = self.peak_bytes
        return d


def weights_bytes_for(arch: Architecture, quant: Quant, block_size: int = 32, linear_kernel: str | None = None) -> float:
    """Bytes of weights an export would write, for models not exported yet (mirrors export's
    formats: BlockQuantMatMul, the default kernel, keeps block scales and mins in float16,
    MatMulNBits in float32)."""
    h, v = arch.hidden_size, arch.vocab_size
    linear = arch.parameter_count() - v * h * (1 if arch.tie_word_embeddings else 2) - h * (2 * arch.num_layers + 1)
    table = v * h * (1 if arch.tie_word_embeddings else 2)
    rotary = arch.max_context * arch.head_dim * 4
    per_layer_norms = 2 * h + (2 * arch.head_dim if arch.qk_norm else 0) + (2 * h if arch.post_norms else 0)
    norms = (h + per_layer_norms * arch.num_layers) * 4
    if quant is Quant.FP32:
        return 4.0 * (linear + table) + rotary + norms
    bits = 4 if quant is Quant.INT4 else 8
    per_block = (4.0 if linear_kernel == "matmulnbits" else 2.0) / block_size  # one scale (and min) per block
    lin = linear * (bits / 8 + per_block + (per_block if quant is Quant.INT4 else 0.0))
    return lin + table * (1 + per_block) + rotary + norms


def workspace_bytes(arch: Architecture, prompt_tokens: int) -> float:
    s = prompt_tokens
    per_token = 4 * (2 * arch.hidden_size + arch.q_size + 2 * arch.kv_size + 3 * arch.intermediate_size)
    return WORKSPACE_BASE_BYTES + WORKSPACE_PER_TOKEN_FACTOR * s * per_token + arch.num_heads * s * s * 4


def estimate_memory(arch: Architecture, quant: Quant, *, context: int, weights_bytes: float | None = None,
                    tokenizer_json_bytes: float = 2.0e6, prompt_tokens: int = 128,
                    runtime_bytes: float = RUNTIME_BYTES, linear_kernel: str | None = None,
                    kv_dtype: KVDtype | str | None = None, sequences: int = 1) -> MemoryEstimate:
    """``linear_kernel`` and ``kv_dtype`` as the manifest records them; None (a preset, or
    fp32) means the export default. ``sequences`` KV caches of ``context`` tokens each (the
    runtime loaded for parallel samples)."""
    quant = Quant(quant)
    residency = RESIDENCY_MATMULNBITS if linear_kernel == "matmulnbits" else RESIDENCY
    wb = weights_bytes if weights_bytes is not None else weights_bytes_for(arch, quant, linear_kernel=linear_kernel)
    return MemoryEstimate(
        weights_file_bytes=wb,
        weights_resident_bytes=wb * residency[quant],
        kv_cache_bytes=float(arch.kv_cache_bytes(context, kv_dtype or kv_dtype_for(quant, linear_kernel), sequences)),
        workspace_bytes=workspace_bytes(arch, min(prompt_tokens, context)),
        runtime_bytes=runtime_bytes,
        tokenizer_bytes=TOKENIZER_BASE_BYTES + TOKENIZER_PER_JSON_BYTE * tokenizer_json_bytes,
        context=context, prompt_tokens=min(prompt_tokens, context))
