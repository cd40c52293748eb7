"""Build the decoder as an ONNX graph for ONNX Runtime's CPU kernels.

The graph is written directly (no tracing), so every choice that matters for a
30-layer x 576 model on a phone is explicit:

* Q, K and V are one packed projection; gate and up are one; attention (edgelm's
  ``Attention`` operator with the edgelm kernel, ONNX Runtime's GroupQueryAttention
  otherwise; the same contract) applies rotary embeddings itself and reads/writes a KV
  cache of fixed capacity
  ``[batch, kv_heads, capacity, head_dim]`` that the runtime binds as both past and
  present (one buffer, updated in place).
* RMSNorm and the residual add are fused (SkipSimplifiedLayerNormalization).
* Only the last ``logits_rows`` positions go through the final norm and the LM head (one
  at decode and prefill; k + 1 when k drafted tokens are verified in one pass).
* Quantized linears are one node each: edgelm's ``BlockQuantMatMul`` (``kernel="edgelm"``,
  the default; ``edgelm/runtime/ortops.py``), which takes the block mins of GGUF Q4_1
  or asymmetric int4 itself (``W = scale * q + min``), stores scales and mins as float16
  (as GGUF does, so its blocks stay exact at 2 bytes less a block each) and computes
  with 16-bit activations (the down projection also takes [gate | up] and applies
  SiLU(gate) * up itself); or ONNX Runtime's
  MatMulNBits (``kernel="matmulnbits"``, int8 activations with ``accuracy_level=4``),
  where a block offset costs one extra small matmul on per-block sums of the
  activations. A tied LM head and the embedding share one set of quantized
  initializers: the embedding gathers rows of the head's packed codes.

Inputs: ``input_ids`` int64 [batch, seq]; ``seqlens_k`` int32 [batch] (tokens in the
cache after this step, minus one); ``total_sequence_length`` int32 scalar;
``logits_rows`` int64 [1] (how many last positions get logits);
``past_key_values.{i}.key|value``. Outputs: ``logits`` [batch, logits_rows, vocab] and
``present.{i}.key|value``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..arch import Architecture
from ..errors import ExportError
from ..manifest import BUILDER_KERNELS as KERNELS
from ..manifest import IOSpec, KVDtype, Quant, kv_dtype_for
from ..runtime.ortops import DOMAIN as EDGELM_DOMAIN
from ..runtime.ortops import OP_TYPE as EDGELM_OP
from .quantize import QuantizedWeight

__all__ = ["build_model", "graph_io", "OPSET", "KERNELS", "io_names", "interleave_offsets", "kernel_blocks", "to_half"]

OPSET = 21
MS = "com.microsoft"


def io_names(num_layers: int) -> dict[str, Any]:
    """The names export gives the decoder graph's inputs and outputs (the manifest's ``io``
    records them; the runtime binds what the manifest says)."""
    return {
        "input_ids": "input_ids",
        "seqlens_k": "seqlens_k",
        "total_sequence_length": "total_sequence_length",
        "logits_rows": "logits_rows",
        "past_key": [f"past_key_values.{i}.key" for i in range(num_layers)],
        "past_value": [f"past_key_values.{i}.value" for i in range(num_layers)],
        "present_key": [f"present.{i}.key" for i in range(num_layers)],
        "present_value": [f"present.{i}.value" for i in range(num_layers)],
        "logits": "logits",
    }


def graph_io(arch: Architecture, model: onnx.ModelProto, model_file: str = "model.onnx") -> IOSpec:
    """The manifest's ``io`` for a graph :func:`build_model` made: the tensor names, the KV
    cache's element type as the graph declares it, and the operator domains its nodes use."""
    names = io_names(arch.num_layers)
    past = next(i for i in model.graph.input if i.name == names["past_key"][0])
    f16 = past.type.tensor_type.elem_type == TensorProto.FLOAT16
    domains = tuple(sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}))
    return IOSpec(model_file=model_file, kv_dtype=KVDtype.FLOAT16 if f16 else KVDtype.FLOAT32,
                  input_ids=names["input_ids"], seqlens_k=names["seqlens_k"],
                  total_sequence_length=names["total_sequence_length"], logits_rows=names["logits_rows"],
                  past_key=tuple(names["past_key"]), past_value=tuple(names["past_value"]),
                  present_key=tuple(names["present_key"]), present_value=tuple(names["present_value"]),
                  operator_domains=domains,
                  notes={"logits": "the last logits_rows positions",
                         "position_handling": "rotary inside attention, positions from seqlens_k"})


def interleave_offsets(offsets: np.ndarray) -> np.ndarray:
    """Per-block values ``[N, blocks]`` in BlockQuantMatMul's layout ``[ceil(N/4), blocks, 4]``:
    four rows side by side, so one vector load serves the four rows the kernel computes
    together (rows past N are zero). Keeps the dtype."""
    n, nb = offsets.shape
    padded = np.zeros(((n + 3) // 4 * 4, nb), offsets.dtype)
    padded[:n] = offsets
    return np.ascontiguousarray(padded.reshape(-1, 4, nb).transpose(0, 2, 1))


def to_half(x: np.ndarray, what: str) -> np.ndarray:
    """float16 for BlockQuantMatMul's scales and mins; a value past float16's range is an
    export error (MatMulNBits keeps float32)."""
    x = np.asarray(x, np.float32)
    if not np.all(np.isfinite(x)) or np.abs(x).max(initial=0.0) > np.finfo(np.float16).max:
        raise ExportError(f"block {what} do not fit float16 (|x| <= 65504); export with --kernel matmulnbits")
    return x.astype(np.float16)


def kernel_blocks(w: QuantizedWeight) -> tuple[np.ndarray, np.ndarray | None]:
    """BlockQuantMatMul's scales and interleaved mins (float16) for ``w``: its offsets
    (``W = scale * (q - zp) + offset``) become mins (``W = scale * q + min``, min = offset -
    zp * scale), which for GGUF Q4_1 is the file's own float16 ``m``."""
    scales = to_half(w.scales, "scales")
    if w.offsets is None:
        return scales, None
    mins = w.offsets.astype(np.float64) - w.zero_point * w.scales.astype(np.float64)
    return scales, interleave_offsets(to_half(mins, "mins"))


class _Builder:
    def __init__(self, accuracy_level: int, kernel: str = "edgelm") -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        self.kernel = kernel
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._blocksums: dict[tuple[str, int], str] = {}
        self.accuracy_level = accuracy_level
        self._n = 0

    def const(self, name: str, array: np.ndarray) -> str:
        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, name: str | None = None,
           domain: str = "", **attrs: Any) -> list[str]:
        self._n += 1
        base = name or f"{op_type}_{self._n}"
        outs = [f"{base}/out{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, domain=domain, **attrs))
        return outs

    def blocksum(self, x: str, block: int) -> str:
        """Sum of ``x`` over each block of ``block`` features (shared by all linears reading x)."""
        key = (x, block)
        if key not in self._blocksums:
            shape = self.const(f"const/shape_blocks_{block}", np.array([0, 0, -1, block], np.int64))
            axes = self.const("const/axes_last", np.array([-1], np.int64))
            r = self.op("Reshape", [x, shape])[0]
            self._blocksums[key] = self.op("ReduceSum", [r, axes], keepdims=0)[0]
        return self._blocksums[key]

    def blocks(self, w: QuantizedWeight) -> tuple[np.ndarray, np.ndarray | None]:
        """The scales initializer of ``w`` in the kernel's dtype (float16 for edgelm's) and, for
        edgelm's kernel, its interleaved mins (MatMulNBits adds offsets with nodes instead)."""
        return kernel_blocks(w) if self.kernel == "edgelm" else (w.scales, None)

    def fuses_swiglu(self, w: np.ndarray | QuantizedWeight) -> bool:
        """Whether ``linear(..., swiglu=True)`` takes [gate | up] itself (edgelm's kernel)."""
        return self.kernel == "edgelm" and isinstance(w, QuantizedWeight)

    def linear(self, x: str, w: np.ndarray | QuantizedWeight, name: str, bias: np.ndarray | None = None,
               swiglu: bool = False) -> str:
        if swiglu and not self.fuses_swiglu(w):
            raise ValueError("only edgelm's kernel takes [gate | up] in the down projection")
        if isinstance(w, QuantizedWeight):
            n, k = w.shape
            b = self.const(f"{name}.qweight", w.packed())
            scales, mins = self.blocks(w)
            s = self.const(f"{name}.scales", scales)
            if self.kernel == "edgelm":
                inputs = [x, b, s]
                if mins is not None:
                    inputs.append(self.const(f"{name}.block_mins", mins))
                y = self.op(EDGELM_OP, inputs, name=name, domain=EDGELM_DOMAIN, K=k, N=n, bits=w.bits,
                            block_size=w.block_size, **({"swiglu": 1} if swiglu else {}))[0]
                if bias is not None:
                    y = self.op("Add", [y, self.const(f"{name}.bias", bias.astype(np.float32))])[0]
                return y
            y = self.op("MatMulNBits", [x, b, s], name=name, domain=MS, K=k, N=n, bits=w.bits,
                        block_size=w.block_size, accuracy_level=self.accuracy_level)[0]
            if w.offsets is not None:
                c = self.const(f"{name}.block_offsets", np.ascontiguousarray(w.offsets.T))
                corr = self.op("MatMul", [self.blocksum(x, w.block_size), c], name=f"{name}/offsets")[0]
                y = self.op("Add", [y, corr])[0]
        else:
            wt = self.const(f"{name}.weight", np.ascontiguousarray(w.T.astype(np.float32)))
            y = self.op("MatMul", [x, wt], name=name)[0]
        if bias is not None:
            y = self.op("Add", [y, self.const(f"{name}.bias", bias.astype(np.float32))])[0]
        return y


def _qk_norm(g: _Builder, arch: Architecture, qkv: str, q_w: np.ndarray, k_w: np.ndarray, name: str,
             eps: float) -> str:
    """Qwen3's and Gemma 3's per-head RMSNorm of the packed projection's q and k parts (over head_dim,
    before the rotary embedding the attention operator applies): split, view as heads,
    normalise, view back, concatenate."""
    h, kv, d = arch.num_heads, arch.num_kv_heads, arch.head_dim
    q, k, v = g.op("Split", [qkv, g.const(f"const/split_qkv_{h}_{kv}_{d}", np.array([h * d, kv * d, kv * d], np.int64))],
                   n_out=3, axis=-1, name=f"{name}/qkv_split")
    parts = []
    for part, heads, w, kind in ((q, h, q_w, "q"), (k, kv, k_w, "k")):
        heads_view = g.op("Reshape", [part, g.const(f"const/shape_heads_{heads}_{d}", np.array([0, 0, heads, d], np.int64))])[0]
        normed = g.op("SimplifiedLayerNormalization", [heads_view, g.const(f"{name}.{kind}_norm", w.astype(np.float32))],
                      name=f"{name}/{kind}_norm", axis=-1, epsilon=eps)[0]
        parts.append(g.op("Reshape", [normed, g.const(f"const/shape_flat_{heads * d}", np.array([0, 0, heads * d], np.int64))])[0])
    return g.op("Concat", [*parts, v], axis=-1, name=f"{name}/qkv_normed")[0]


def build_model(arch: Architecture, weights: dict[str, Any], cos: np.ndarray, sin: np.ndarray,
                accuracy_level: int = 4, builder: type[_Builder] | None = None,
                kernel: str = "edgelm", local_rope: tuple[np.ndarray, np.ndarray] | None = None) -> onnx.ModelProto:
    """Build the graph. ``weights`` holds canonical names; Q/K/V and gate/up already packed
    as ``L{i}.qkv`` / ``L{i}.gate_up`` (and ``L{i}.qkv_bias`` with attention bias)."""
    g = (builder or _Builder)(accuracy_level, kernel)  # a subclass may emit linears differently (benchmarks)
    names = io_names(arch.num_layers)
    h, eps = arch.hidden_size, float(arch.rms_norm_eps)
    # edgelm's Attention (kernels/ortops/attention.c) where the folder needs edgelm's operator
    # library anyway (quantized linears on the edgelm kernel); GroupQueryAttention otherwise.
    quantized = any(isinstance(w, QuantizedWeight) for w in weights.values())
    own_attention = kv_dtype_for(Quant.INT4 if quantized else Quant.FP32, g.kernel) is KVDtype.FLOAT16
    cos_c = g.const("rotary.cos_cache", cos.astype(np.float32))
    sin_c = g.const("rotary.sin_cache", sin.astype(np.float32))
    # Sliding-window layers may rotate with a base of their own (Gemma 3: 10,000 against 10^6).
    cos_l, sin_l = cos_c, sin_c
    if local_rope is not None and arch.sliding_window:
        cos_l = g.const("rotary.local_cos_cache", local_rope[0].astype(np.float32))
        sin_l = g.const("rotary.local_sin_cache", local_rope[1].astype(np.float32))
    scale = float((arch.query_pre_attn_scalar or arch.head_dim) ** -0.5)

    embed = weights["embed"]
    if isinstance(embed, QuantizedWeight):
        if embed.bits != 8 or embed.offsets is not None:
            raise ValueError("a quantized embedding must be 8-bit symmetric")
        b = g.const("lm_head.qweight" if arch.tie_word_embeddings else "embed.qweight", embed.packed())
        embed_scales = g.blocks(embed)[0]
        s = g.const("lm_head.scales" if arch.tie_word_embeddings else "embed.scales", embed_scales)
        codes = g.op("Gather", [b, "input_ids"], name="embed/gather_codes")[0]
        codes_f = g.op("Cast", [codes], to=TensorProto.FLOAT)[0]
        centred = g.op("Sub", [codes_f, g.const("const/zp8", np.array(128.0, np.float32))])[0]
        scales = g.op("Gather", [s, "input_ids"], name="embed/gather_scales")[0]
        if embed_scales.dtype != np.float32:
            scales = g.op("Cast", [scales], to=TensorProto.FLOAT)[0]
        scales = g.op("Unsqueeze", [scales, g.const("const/axes_last", np.array([-1], np.int64))])[0]
        rows = g.op("Mul", [centred, scales])[0]
        hidden = g.op("Reshape", [rows, g.const("const/shape_hidden", np.array([0, 0, h], np.int64))],
                      name="embed")[0]
    else:
        table = g.const("embed.weight", embed.astype(np.float32))
        hidden = g.op("Gather", [table, "input_ids"], name="embed")[0]

    if arch.embedding_scale != 1.0:  # rounded to float32, as transformers does
        hidden = g.op("Mul", [hidden, g.const("const/embed_scale", np.array(arch.embedding_scale, np.float32))],
                      name="embed/scale")[0]
    residual = hidden
    x = g.op("SimplifiedLayerNormalization", [hidden, g.const("L0.attn_norm", weights["L0.attn_norm"])],
             name="L0/attn_norm", axis=-1, epsilon=eps)[0]
    for i in range(arch.num_layers):
        qkv = g.linear(x, weights[f"L{i}.qkv"], f"L{i}.qkv", weights.get(f"L{i}.qkv_bias"))
        if arch.qk_norm:
            qkv = _qk_norm(g, arch, qkv, weights[f"L{i}.q_norm"], weights[f"L{i}.k_norm"], f"L{i}", eps)
        window = arch.window_of(i)
        cs, sn = (cos_l, sin_l) if window else (cos_c, sin_c)
        if own_attention:
            attn = g.op("Attention", [qkv, names["past_key"][i], names["past_value"][i], "seqlens_k",
                                      "total_sequence_length", cs, sn],
                        n_out=3, name=f"L{i}/attn", domain=EDGELM_DOMAIN, num_heads=arch.num_heads,
                        kv_num_heads=arch.num_kv_heads, scale=scale, **({"local_window": window} if window else {}))
        else:
            attn = g.op("GroupQueryAttention",
                        [qkv, "", "", names["past_key"][i], names["past_value"][i], "seqlens_k",
                         "total_sequence_length", cs, sn],
                        n_out=3, name=f"L{i}/attn", domain=MS, num_heads=arch.num_heads,
                        kv_num_heads=arch.num_kv_heads, do_rotary=1, rotary_interleaved=0,
                        scale=scale, **({"local_window_size": window} if window else {}))
        g.nodes[-1].output[1] = names["present_key"][i]
        g.nodes[-1].output[2] = names["present_value"][i]
        o = g.linear(attn[0], weights[f"L{i}.o"], f"L{i}.o")
        if arch.post_norms:
            o = g.op("SimplifiedLayerNormalization", [o, g.const(f"L{i}.post_attn_norm", weights[f"L{i}.post_attn_norm"])],
                     name=f"L{i}/post_attn_norm", axis=-1, epsilon=eps)[0]
        x, _, _, residual = g.op("SkipSimplifiedLayerNormalization",
                                 [o, residual, g.const(f"L{i}.mlp_norm", weights[f"L{i}.mlp_norm"])],
                                 n_out=4, name=f"L{i}/mlp_norm", domain=MS, epsilon=eps)
        gu = g.linear(x, weights[f"L{i}.gate_up"], f"L{i}.gate_up")
        if not arch.gelu_mlp and g.fuses_swiglu(weights[f"L{i}.down"]):  # silu(gate) * up inside the down projection
            down = g.linear(gu, weights[f"L{i}.down"], f"L{i}.down", swiglu=True)
        else:
            gate, up = g.op("Split", [gu, g.const(f"const/split_{arch.intermediate_size}",
                                                  np.array([arch.intermediate_size] * 2, np.int64))],
                            n_out=2, axis=-1)
            if arch.gelu_mlp:  # GeGLU with the tanh approximation (gelu_pytorch_tanh)
                act = g.op("Mul", [g.op("Gelu", [gate], approximate="tanh")[0], up])[0]
            else:
                act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])[0]])[0], up])[0]
            down = g.linear(act, weights[f"L{i}.down"], f"L{i}.down")
        if arch.post_norms:
            down = g.op("SimplifiedLayerNormalization", [down, g.const(f"L{i}.post_mlp_norm", weights[f"L{i}.post_mlp_norm"])],
                        name=f"L{i}/post_mlp_norm", axis=-1, epsilon=eps)[0]
        if i + 1 < arch.num_layers:
            x, _, _, residual = g.op("SkipSimplifiedLayerNormalization",
                                     [down, residual, g.const(f"L{i + 1}.attn_norm", weights[f"L{i + 1}.attn_norm"])],
                                     n_out=4, name=f"L{i + 1}/attn_norm", domain=MS, epsilon=eps)
        else:
            # Only the last logits_rows positions need the final norm and the head.
            starts = g.op("Neg", [names["logits_rows"]], name="logits_rows/neg")[0]
            ends = g.const("const/intmax", np.array([np.iinfo(np.int64).max], np.int64))
            axis1 = g.const("const/axis1", np.array([1], np.int64))
            down_last = g.op("Slice", [down, starts, ends, axis1])[0]
            res_last = g.op("Slice", [residual, starts, ends, axis1])[0]
            x = g.op("SkipSimplifiedLayerNormalization",
                     [down_last, res_last, g.const("final_norm", weights["final_norm"])],
                     n_out=1, name="final_norm", domain=MS, epsilon=eps)[0]

    head = weights["embed"] if arch.tie_word_embeddings else weights["head"]
    if isinstance(head, QuantizedWeight):
        logits = g.linear(x, head, "lm_head")
    else:
        table = g.const("embed.weight" if arch.tie_word_embeddings else "lm_head.weight", head.astype(np.float32))
        flat = g.op("Reshape", [x, g.const("const/shape_2d", np.array([-1, h], np.int64))])[0]
        logits2d = g.op("Gemm", [flat, table], name="lm_head", transB=1)[0]
        rows_shape = g.op("Slice", [g.op("Shape", [x])[0], g.const("const/zero", np.array([0], np.int64)),
                                    g.const("const/two", np.array([2], np.int64))])[0]
        shape = g.op("Concat", [rows_shape, g.const("const/vocab", np.array([arch.vocab_size], np.int64))], axis=0)[0]
        logits = g.op("Reshape", [logits2d, shape])[0]
    g.nodes.append(helper.make_node("Identity", [logits], [names["logits"]], name="logits"))

    kv_shape: list[str | int] = ["batch", arch.num_kv_heads, "cache_capacity", arch.head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
              helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
              helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
              helper.make_tensor_value_info("logits_rows", TensorProto.INT64, [1])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "logits_rows", arch.vocab_size])]
    kv_type = TensorProto.FLOAT16 if own_attention else TensorProto.FLOAT
    for i in range(arch.num_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(names[f"past_{kind}"][i], kv_type, kv_shape))
            outputs.append(helper.make_tensor_value_info(names[f"present_{kind}"][i], kv_type, kv_shape))
    graph = helper.make_graph(g.nodes, "edgelm_decoder", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)]
    if any(node.domain == EDGELM_DOMAIN for node in g.nodes):
        opsets.append(helper.make_opsetid(EDGELM_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgelm")
    model.ir_version = 10
    return model
