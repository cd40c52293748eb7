"""The decoder architecture edgelm supports, and named architecture presets.

One frozen dataclass describes a Llama-family decoder (Llama, SmolLM, MobileLLM,
Qwen2-style attention bias). Export fills it from the source; everything downstream
reads it back from the manifest instead of re-deriving it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any

from .errors import ManifestError

__all__ = ["Family", "KVDtype", "kv_bytes_per_value", "RING_SLACK", "ring_cache", "Architecture", "ARCH_PRESETS", "REFERENCE_SHAPES",
           "SUPPORTED_MODEL_TYPES", "fit_ffn", "shape_for_params"]


class KVDtype(str, Enum):
    """The KV cache's element type (the manifest's ``io.kv_dtype``)."""

    FLOAT16 = "float16"
    FLOAT32 = "float32"


def kv_bytes_per_value(kv_dtype: KVDtype | str) -> int:
    """Bytes of one K or V value: the one place the KV dtype becomes a size."""
    return 2 if KVDtype(kv_dtype) is KVDtype.FLOAT16 else 4


#: Rows a window layer's ring keeps beyond its window: the most tokens one step may append
#: once the ring has wrapped (RING_SLACK + 1), and the furthest the runtime can rewind.
RING_SLACK = 128


def ring_cache(kv_dtype: KVDtype | str) -> bool:
    """Whether window layers keep a ring of their window's rows instead of the whole
    context: under edgelm's Attention operator, whose cache is float16 (GroupQueryAttention,
    with its float32 cache, reads a cache of every position)."""
    return KVDtype(kv_dtype) is KVDtype.FLOAT16


class Family(str, Enum):
    LLAMA = "llama"
    QWEN2 = "qwen2"
    QWEN3 = "qwen3"  # Qwen2's layout without the QKV bias, with RMSNorm on each head's q and k
    # Gemma 3 text: q/k norms, norms after attention and after the MLP too, GeGLU (tanh
    # GELU), embeddings times sqrt(hidden), sliding-window layers with their own rope base.
    GEMMA3 = "gemma3"
    #: A decoder edgelm's graph builder does not build, exported through optimum's ONNX
    #: exporter (``model_type`` says which); only its shape is used here (memory, energy).
    OTHER = "other"


#: transformers ``model_type`` values edgelm exports, and the family each maps to.
SUPPORTED_MODEL_TYPES: dict[str, Family] = {
    "llama": Family.LLAMA,
    "smollm": Family.LLAMA,
    "mobilellm": Family.LLAMA,
    "qwen2": Family.QWEN2,
    "qwen3": Family.QWEN3,
    "gemma3_text": Family.GEMMA3,
}


#: Upper bounds of the architecture's counts: generous for any sub-10B decoder, and small
#: enough that sizes computed from them (KV cache, scratch) never overflow or exhaust
#: memory by mistake when a manifest says 10^12. head_dim is the Attention operator's limit.
_LIMITS = {"num_layers": 1024, "hidden_size": 1 << 16, "num_heads": 1024, "num_kv_heads": 1024, "head_dim": 256,
           "intermediate_size": 1 << 18, "vocab_size": 1 << 24, "max_context": 1 << 22}


@dataclass(frozen=True)
class Architecture:
    """Shape of a Llama-family decoder. All sizes are counts, not bytes."""

    family: Family
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    #: Keys a sliding-window layer attends to (its own position and the window - 1 before);
    #: 0: every layer attends to the whole sequence.
    sliding_window: int = 0
    #: With a sliding window, the layers that still attend to the whole sequence.
    global_layers: tuple[int, ...] = ()
    #: The rope base of the sliding-window layers (0: rope_theta).
    rope_local_theta: float = 0.0
    #: Queries are scaled by query_pre_attn_scalar ** -0.5 (0: head_dim, the usual).
    query_pre_attn_scalar: float = 0.0
    #: The source's transformers ``model_type`` for family OTHER ("" otherwise).
    model_type: str = ""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "family", Family(self.family))
        except ValueError:
            raise ManifestError(f"architecture field family must be one of "
                                f"{', '.join(f.value for f in Family)}, got {self.family!r}") from None
        for name, hi in _LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= hi:
                raise ManifestError(f"architecture field {name} must be an integer in [1, {hi}], got {value!r}")
        for name in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e30:
                raise ManifestError(f"architecture field {name} must be a positive finite number, got {value!r}")
        for name in ("tie_word_embeddings", "attention_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ManifestError(f"architecture field {name} must be true or false, got {getattr(self, name)!r}")
        if self.num_heads % self.num_kv_heads:
            raise ManifestError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.head_dim % 2:
            raise ManifestError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        w = self.sliding_window
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= _LIMITS["max_context"]:
            raise ManifestError(f"architecture field sliding_window must be an integer in [0, "
                                f"{_LIMITS['max_context']}], got {w!r}")
        layers = self.global_layers
        if isinstance(layers, list):
            layers = tuple(layers)
            object.__setattr__(self, "global_layers", layers)
        if not isinstance(layers, tuple) or any(isinstance(i, bool) or not isinstance(i, int)
                                                or not 0 <= i < self.num_layers for i in layers) \
                or list(layers) != sorted(set(layers)):
            raise ManifestError("architecture field global_layers must be increasing layer indices below "
                                f"num_layers ({self.num_layers}), got {self.global_layers!r}")
        mt = self.model_type
        if not isinstance(mt, str) or len(mt) > 64 or not all(c.isalnum() or c in "_-." for c in mt):
            raise ManifestError(f"architecture field model_type must be a name of at most 64 letters, digits "
                                f"and _-., got {mt!r}")
        for name in ("rope_local_theta", "query_pre_attn_scalar"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e30:
                raise ManifestError(f"architecture field {name} must be a finite number >= 0, got {value!r}")

    @property
    def qk_norm(self) -> bool:
        """Whether each head's query and key are RMS-normalised (over head_dim, one weight
        vector each, shared by the heads) before the rotary embedding: Qwen3, Gemma 3."""
        return self.family in (Family.QWEN3, Family.GEMMA3)

    @property
    def post_norms(self) -> bool:
        """Whether the attention's and the MLP's outputs are RMS-normalised before the
        residual add (Gemma 3: four norms a layer)."""
        return self.family is Family.GEMMA3

    @property
    def gelu_mlp(self) -> bool:
        """Whether the MLP gates with tanh-approximated GELU (GeGLU, Gemma 3) instead of SiLU."""
        return self.family is Family.GEMMA3

    @property
    def embedding_scale(self) -> float:
        """What the embedding rows are multiplied by (Gemma 3: sqrt(hidden); 1 otherwise)."""
        return self.hidden_size ** 0.5 if self.family is Family.GEMMA3 else 1.0

    def window_of(self, layer: int) -> int:
        """Keys layer ``layer`` attends to at most (0: all)."""
        return 0 if self.sliding_window == 0 or layer in self.global_layers else self.sliding_window

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_dim

    def parameter_count(self) -> int:
        """Number of weights, counting a tied embedding once."""
        h, f = self.hidden_size, self.intermediate_size
        attn = h * (self.q_size + 2 * self.kv_size) + self.q_size * h
        if self.attention_bias:
            attn += self.q_size + 2 * self.kv_size
        mlp = 3 * h * f
        per_layer = attn + mlp + 2 * h + (2 * self.head_dim if self.qk_norm else 0) + (2 * h if self.post_norms else 0)
        emb = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.num_layers * per_layer + emb + head + h

    def kv_rows(self, layer: int, context: int, ring: bool = True) -> int:
        """Rows of layer ``layer``'s cache for ``context`` tokens: a window layer's ring
        (with ``ring``) holds its window and RING_SLACK more, or the context if that is less."""
        window = self.window_of(layer)
        return min(context, window + RING_SLACK) if ring and window else context

    def kv_cache_shape(self, context: int, sequences: int = 1) -> tuple[int, int, int, int]:
        """A K (or V) cache of ``context`` rows for each of ``sequences``, BNSH."""
        return (sequences, self.num_kv_heads, context, self.head_dim)

    def kv_cache_bytes(self, context: int, kv_dtype: KVDtype | str, sequences: int = 1) -> int:
        """Bytes of every layer's K and V cache for ``context`` tokens of each of
        ``sequences``: what the runtime allocates and the memory model counts (a window
        layer's ring, where the cache's operator keeps one: ring_cache)."""
        ring = ring_cache(kv_dtype)
        rows = sum(self.kv_rows(i, context, ring) for i in range(self.num_layers))
        return 2 * self.num_kv_heads * self.head_dim * rows * sequences * kv_bytes_per_value(kv_dtype)

    def kv_read_bytes(self, context: int, kv_dtype: KVDtype | str) -> int:
        """Bytes of K and V a decode step reads at ``context`` tokens: each layer's rows in
        use, a window layer's window (under edgelm's operator, which reads no others)."""
        ring = ring_cache(kv_dtype)
        rows = sum(min(context, self.window_of(i)) if ring and self.window_of(i) else context
                   for i in range(self.num_layers))
        return 2 * self.num_kv_heads * self.head_dim * rows * kv_bytes_per_value(kv_dtype)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["family"] = self.family.value
        d["global_layers"] = list(self.global_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        if not isinstance(d, dict):
            raise ManifestError("architecture must be a JSON object")
        known = {f.name for f in fields(cls)}
        required = {"family", "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                    "intermediate_size", "vocab_size", "max_context"}
        missing = sorted(required - d.keys())
        if missing:
            raise ManifestError(f"architecture is missing field(s): {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ManifestError(f"architecture: {e}") from e


def _mobilellm(layers: int, hidden: int, heads: int, kv_heads: int, ffn: int) -> Architecture:
    # MobileLLM (Liu et al., ICML 2024, arXiv:2402.14905), Table 9: deep-and-thin shapes,
    # SwiGLU, GQA, embedding sharing, the 32k LLaMA-2 vocabulary, 2k training context.
    return Architecture(Family.LLAMA, layers, hidden, heads, kv_heads, hidden // heads, ffn,
                        32000, 2048, rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


#: Random-initialised architecture presets, for planning and speed work.
ARCH_PRESETS: dict[str, Architecture] = {
    "mobilellm-125m": _mobilellm(30, 576, 9, 3, 1536),
    "mobilellm-350m": _mobilellm(32, 960, 15, 5, 2560),
    "mobilellm-600m": _mobilellm(40, 1152, 18, 6, 3072),
    "mobilellm-1b": _mobilellm(54, 1280, 20, 5, 3584),
    # Qwen/Qwen3-0.6B's config.json: 28 layers x 1024, 16 heads of 128 (wider than hidden),
    # 8 KV heads, per-head q/k norms, a 151,936-token vocabulary, tied.
    # HuggingFaceTB/SmolLM2-360M and meta-llama/Llama-3.2-1B config.json shapes (Llama 3.2's
    # llama3 rope scaling changes the rotary tables, not a size: presets use plain rope).
    "smollm2-360m": Architecture(Family.LLAMA, 32, 960, 15, 5, 64, 2560, 49152, 8192, rope_theta=100000.0),
    "llama3.2-1b": Architecture(Family.LLAMA, 16, 2048, 32, 8, 64, 8192, 128256, 131072, rope_theta=500000.0),
    # google/gemma-3-270m and gemma-3-1b-pt config.json: 4 query heads of 256 and one KV
    # head, a 262,144-token vocabulary, five 512-key sliding-window layers to a global one.
    "gemma3-270m": Architecture(Family.GEMMA3, 18, 640, 4, 1, 256, 2048, 262144, 32768, rope_theta=1000000.0,
                                rms_norm_eps=1e-6, sliding_window=512, global_layers=(5, 11, 17),
                                rope_local_theta=10000.0, query_pre_attn_scalar=256.0),
    "gemma3-1b": Architecture(Family.GEMMA3, 26, 1152, 4, 1, 256, 6912, 262144, 32768, rope_theta=1000000.0,
                              rms_norm_eps=1e-6, sliding_window=512, global_layers=(5, 11, 17, 23),
                              rope_local_theta=10000.0, query_pre_attn_scalar=256.0),
    "qwen3-0.6b": Architecture(Family.QWEN3, 28, 1024, 16, 8, 128, 3072, 151936, 40960, rope_theta=1000000.0,
                               rms_norm_eps=1e-6, tie_word_embeddings=True),
}

#: SmolLM2-135M's shape (HuggingFaceTB/SmolLM2-135M config.json), so the preset name
#: plans and profiles before the model is exported.
SMOLLM2_135M = Architecture(Family.LLAMA, 30, 576, 9, 3, 64, 1536, 49152, 8192, rope_theta=100000.0)

#: Shapes a parameter count is fitted to (closest on a log scale): the MobileLLM presets
#: up to 1B, then the published Llama-3.2-3B and Llama-2-7B/13B shapes (layers, hidden,
#: heads, KV heads) with MobileLLM's 32k vocabulary.
REFERENCE_SHAPES: tuple[Architecture, ...] = (
    *ARCH_PRESETS.values(),
    Architecture(Family.LLAMA, 28, 3072, 24, 8, 128, 8192, 32000, 4096, tie_word_embeddings=False),
    Architecture(Family.LLAMA, 32, 4096, 32, 32, 128, 11008, 32000, 4096, tie_word_embeddings=False),
    Architecture(Family.LLAMA, 40, 5120, 40, 40, 128, 13824, 32000, 4096, tie_word_embeddings=False),
)

FFN_MULTIPLE = 64


def fit_ffn(base: Architecture, params: float) -> Architecture:
    """``base`` with the FFN width (a multiple of 64, at least 64) whose parameter count is
    nearest ``params``: the one rounding the planner and the profiler's shape comparison use."""
    from dataclasses import replace

    per_unit = 3 * base.hidden_size * base.num_layers  # gate, up and down, every layer
    without_ffn = replace(base, intermediate_size=FFN_MULTIPLE).parameter_count() - FFN_MULTIPLE * per_unit
    units = round((params - without_ffn) / per_unit / FFN_MULTIPLE)
    return replace(base, intermediate_size=max(1, units) * FFN_MULTIPLE)


def shape_for_params(params: float) -> Architecture:
    """A Llama-family decoder of about ``params`` weights: the reference shape closest in
    parameter count (log scale), its FFN fitted to the count."""
    import math

    base = min(REFERENCE_SHAPES, key=lambda a: abs(math.log(a.parameter_count() / params)))
    return fit_ffn(base, params)
