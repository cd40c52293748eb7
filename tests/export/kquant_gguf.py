"""Test helpers: encode weights as GGUF K-quants (gguf-py reads them but cannot write
them) and rewrite a GGUF file with some tensors re-encoded, metadata copied, through
gguf-py's GGUFWriter. The encoders are plain min/max rounding, not llama.cpp's search:
what matters here is that the bytes are valid K-quants, which gguf-py's dequantization
checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _pack_scales_mins(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins a super-block -> its 12 packed bytes."""
    sc, mn = sc.astype(np.uint8), mn.astype(np.uint8)
    out = np.zeros((*sc.shape[:-1], 12), np.uint8)
    out[..., 0:4] = (sc[..., :4] & 63) | ((sc[..., 4:] >> 4) << 6)
    out[..., 4:8] = (mn[..., :4] & 63) | ((mn[..., 4:] >> 4) << 6)
    out[..., 8:12] = (sc[..., 4:] & 15) | ((mn[..., 4:] & 15) << 4)
    return out


def encode_q4_k(w: np.ndarray) -> np.ndarray:
    """float32 ``[n, k]`` (k a multiple of 256) -> Q4_K bytes ``[n, k / 256 * 144]``."""
    n, k = w.shape
    x = w.reshape(n, k // 256, 8, 32).astype(np.float32)
    lo = np.minimum(x.min(-1), 0.0)
    step = (x.max(-1) - lo) / 15.0
    d = (step.max(-1) / 63.0).astype(np.float16)
    dmin = ((-lo).max(-1) / 63.0).astype(np.float16)
    df, dmf = d.astype(np.float32)[..., None], dmin.astype(np.float32)[..., None]
    sc = np.clip(np.round(np.divide(step, df, out=np.zeros_like(step), where=df > 0)), 0, 63)
    mn = np.clip(np.round(np.divide(-lo, dmf, out=np.zeros_like(lo), where=dmf > 0)), 0, 63)
    scale, low = (df * sc)[..., None], (dmf * mn)[..., None]
    q = np.clip(np.round(np.divide(x + low, scale, out=np.zeros_like(x), where=scale > 0)), 0, 15).astype(np.uint8)
    pairs = q.reshape(n, k // 256, 4, 2, 32)
    qs = (pairs[..., 0, :] | (pairs[..., 1, :] << 4)).reshape(n, k // 256, 128)
    blocks = np.concatenate([d[..., None].view(np.uint8), dmin[..., None].view(np.uint8),
                             _pack_scales_mins(sc, mn), qs], axis=-1)
    return blocks.reshape(n, -1)


def encode_q6_k(w: np.ndarray) -> np.ndarray:
    """float32 ``[n, k]`` -> Q6_K bytes ``[n, k / 256 * 210]``."""
    n, k = w.shape
    x = w.reshape(n, k // 256, 16, 16).astype(np.float32)
    step = np.abs(x).max(-1) / 31.0
    d = (step.max(-1) / 127.0).astype(np.float16)
    df = d.astype(np.float32)[..., None]
    sc = np.clip(np.round(np.divide(step, df, out=np.zeros_like(step), where=df > 0)), -128, 127).astype(np.int8)
    scale = (df * sc.astype(np.float32))[..., None]
    q = (np.clip(np.round(np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)), -32, 31) + 32).astype(np.uint8)
    q = q.reshape(n, k // 256, 2, 4, 32)  # halves of 128, runs of 32
    ql = np.concatenate([(q[..., 0, :] & 15) | ((q[..., 2, :] & 15) << 4),
                         (q[..., 1, :] & 15) | ((q[..., 3, :] & 15) << 4)], axis=-1)  # [.., 2, 64]
    qh = ((q[..., 0, :] >> 4) | ((q[..., 1, :] >> 4) << 2) | ((q[..., 2, :] >> 4) << 4)
          | ((q[..., 3, :] >> 4) << 6))  # [.., 2, 32]
    blocks = np.concatenate([ql.reshape(n, k // 256, 128), qh.reshape(n, k // 256, 64),
                             sc.view(np.uint8).reshape(n, k // 256, 16), d[..., None].view(np.uint8)], axis=-1)
    return blocks.reshape(n, -1)


def rewrite_gguf(src: Path, dst: Path, choose: Callable[[str, tuple[int, int]], str | None]) -> dict[str, str]:
    """Copy ``src`` to ``dst``, re-encoding each 2-D tensor for which ``choose(name, (n, k))``
    names a type ("Q4_K" or "Q6_K") from its dequantized weights. Returns name -> new type."""
    import gguf
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(str(src))
    arch = str(reader.fields["general.architecture"].contents())
    writer = GGUFWriter(str(dst), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if field.types[0] == GGUFValueType.ARRAY:
            writer.add_array(name, value)
        else:
            writer.add_key_value(name, value, field.types[0])
    changed = {}
    encoders = {"Q4_K": encode_q4_k, "Q6_K": encode_q6_k}
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # numpy order: [n, k]
        new = choose(t.name, shape) if len(shape) == 2 else None
        if new is None:
            writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
            continue
        w = dequantize(np.asarray(t.data), t.tensor_type).reshape(shape).astype(np.float32)
        writer.add_tensor(t.name, encoders[new](w), raw_dtype=getattr(gguf.GGMLQuantizationType, new))
        changed[t.name] = new
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return changed


#: Tokenizer fields a SentencePiece vocabulary (Gemma's) does not have.
_NOT_SENTENCEPIECE = {"tokenizer.ggml.model", "tokenizer.ggml.merges", "tokenizer.ggml.pre"}
#: transformers model_type -> GGUF architecture name, for write_model_gguf.
GGUF_ARCH = {"qwen3": "qwen3", "gemma3_text": "gemma3", "llama": "llama", "qwen2": "qwen2"}


def write_model_gguf(model: Any, dst: Path, tokenizer_from: Path, linear_type: str = "Q8_0") -> dict[str, str]:
    """A transformers decoder as a GGUF file the way llama.cpp's converter lays it out: its
    config as ``{arch}.*`` keys, the tokenizer fields of ``tokenizer_from`` (a GGUF of the
    same vocabulary), the 2-D weights in ``linear_type`` and the rest float32; Gemma's norm
    weights stored as 1 + w (llama.cpp multiplies by them; transformers takes the 1 back
    off). No Q/K permutation: llama.cpp permutes only its llama architecture. Returns GGUF
    tensor name -> type."""
    import gguf
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import quantize

    cfg = model.config
    arch = GGUF_ARCH[cfg.model_type]
    writer = GGUFWriter(str(dst), arch)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    u32 = {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
           "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
           "attention.head_count": cfg.num_attention_heads, "attention.head_count_kv": cfg.num_key_value_heads,
           "attention.key_length": head_dim, "attention.value_length": head_dim, "vocab_size": cfg.vocab_size}
    if arch == "gemma3":
        u32["attention.sliding_window"] = cfg.sliding_window
    for key, value in u32.items():
        writer.add_uint32(f"{arch}.{key}", int(value))
    writer.add_float32(f"{arch}.rope.freq_base", float(cfg.rope_theta))
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", float(cfg.rms_norm_eps))
    reader = GGUFReader(str(tokenizer_from))
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer.") or (arch == "gemma3" and name in _NOT_SENTENCEPIECE):
            continue
        value = field.contents()
        if arch == "gemma3" and name == "tokenizer.ggml.tokens":
            # transformers reads a Gemma GGUF's vocabulary as SentencePiece pieces with
            # scores: the same tokens, their byte-level space as SentencePiece's, ranked.
            value = [t.replace("\u0120", "\u2581") for t in value]
            writer.add_array("tokenizer.ggml.scores", [-float(i) for i in range(len(value))])
            writer.add_string("tokenizer.ggml.model", "llama")
        if field.types[0] == GGUFValueType.ARRAY:
            writer.add_array(name, value)
        else:
            writer.add_key_value(name, value, field.types[0])
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), cfg.num_hidden_layers)
    qtype = getattr(gguf.GGMLQuantizationType, linear_type)
    types = {}
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        assert name is not None, hf_name
        w = tensor.detach().float().numpy()
        if arch == "gemma3" and hf_name.endswith("norm.weight"):
            w = w + np.float32(1.0)
        if w.ndim == 2:
            encode = {"Q4_K": encode_q4_k, "Q6_K": encode_q6_k}.get(linear_type)
            data = encode(w) if encode else quantize(w, qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)
            types[name] = linear_type
        else:
            writer.add_tensor(name, w.astype(np.float32))
            types[name] = "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types
