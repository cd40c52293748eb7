"""Export through optimum's ONNX exporter (``edgelm export --via optimum``): for a decoder
edgelm's own graph builder does not build (export switches to it, with a note), and as the
naive baseline edgelm's graph is measured against (benchmarks/compare_peers.py).

optimum writes the transformers model as a standard ONNX graph (``text-generation-with-past``:
the past KV cache in, the present out, an attention mask); ONNX Runtime's quantizers make it
int4 (MatMulNBits, block 32, symmetric) or int8 (dynamic, MatMulInteger); the folder gets
the same tokenizer, generation config, verification against transformers and manifest as
edgelm's own export (int4: asymmetric blocks and an 8-bit head, the best of the quantizer's
settings on SmolLM2: top-1 0.78 against 0.72 symmetric with a 4-bit head), so generate, bench, profile and plan run on it
(runtime/past_session.py). The embedding table stays float32 (a Gather the quantizers do
not touch); a tied head is untied into its own initializer so that it is quantized.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..arch import KVDtype
from ..errors import ExportError
from ..manifest import IOSpec, Quant

__all__ = ["optimum_available", "export_onnx", "quantize", "optimum_io", "weight_bytes", "METHODS"]

MODEL_FILE = "model.onnx"
BLOCK_SIZE = 32
INSTALL = "pip install 'edgelm[optimum]' (optimum-onnx and onnx-ir)"

#: The manifest's quantization methods, by quantization.
METHODS = {
    Quant.FP32: {"linears": "float32 (optimum's graph as exported)"},
    Quant.INT8: {"linears": "onnxruntime.quantization.quantize_dynamic: int8 weights per tensor, "
                            "activations quantized at run time (MatMulInteger)",
                 "embeddings": "float32"},
    Quant.INT4: {"linears": f"onnxruntime MatMulNBitsQuantizer: 4-bit, block {BLOCK_SIZE}, asymmetric "
                            "(zero points), float32 scales (MatMulNBits)",
                 "head": "the same at 8 bits", "embeddings": "float32"},
}


def optimum_available() -> str | None:
    """None if optimum's exporter and ONNX Runtime's quantizer can be imported, else why not."""
    try:
        import onnx_ir  # noqa: F401  (ONNX Runtime's MatMulNBits quantizer needs it)
        from optimum.exporters.onnx import main_export  # noqa: F401
    except ImportError as e:
        return f"{e.name or e}: not installed"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """optimum's tracer warnings and the quantizers' per-node log lines: edgelm says what it does."""
    names = ("optimum", "onnxruntime", "onnxruntime.quantization", "transformers", "torch")
    saved = {n: logging.getLogger(n).level for n in (*names, "")}
    root_handlers = logging.getLogger().handlers[:]
    try:
        for n in (*names, ""):  # the int8 quantizer logs to the root logger
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
        logging.getLogger().handlers[:] = root_handlers


def export_onnx(model: Any, work: Path) -> Any:
    """optimum's fp32 graph of the (loaded, fp32) transformers ``model``, as an
    onnx.ModelProto with its weights loaded."""
    import onnx
    from optimum.exporters.onnx import main_export

    src, out = work / "hf", work / "onnx"
    model.save_pretrained(src, safe_serialization=True)
    try:
        with _quiet():
            main_export(str(src), output=str(out), task="text-generation-with-past", device="cpu",
                        do_validation=False, no_post_process=True, library_name="transformers")
    except Exception as e:  # optimum raises ValueError/KeyError/... for a model it cannot export
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ExportError(f"optimum's ONNX exporter cannot export this model: {first}") from e
    path = out / MODEL_FILE
    if not path.is_file():
        raise ExportError(f"optimum's ONNX exporter wrote no {MODEL_FILE}")
    return onnx.load(str(path))


def _untie_transposed_weights(model: Any) -> None:
    """A tied head reaches its MatMul through a Transpose of the embedding table, which the
    quantizer skips (its weight is not a constant): give it the transposed table as its own
    initializer."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in list(model.graph.node):
        if node.op_type == "Transpose" and len(node.input) == 1 and node.input[0] in inits:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            w = numpy_helper.to_array(inits[node.input[0]], base_dir="")
            t = numpy_helper.from_array(w.transpose(perm) if perm else w.T, node.output[0])
            model.graph.initializer.append(t)
            model.graph.node.remove(node)


def _head_nodes(model: Any, vocab_size: int) -> list[str]:
    """The MatMuls whose constant weight is [hidden, vocab]: the LM head."""
    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and len(n.input) == 2
            and n.input[1] in inits and len(inits[n.input[1]].dims) == 2 and inits[n.input[1]].dims[1] == vocab_size]


def quantize(model: Any, quant: Quant, work: Path, accuracy_level: int, vocab_size: int) -> Any:
    """ONNX Runtime's quantizers on optimum's graph: int4 MatMulNBits (the head at 8 bits),
    int8 dynamic."""
    import onnx

    if quant is Quant.FP32:
        return model
    _untie_transposed_weights(model)
    with _quiet():
        if quant is Quant.INT4:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            head = _head_nodes(model, vocab_size)
            for bits, which in ((4, {"nodes_to_exclude": head}), (8, {"nodes_to_include": head})):
                if bits == 8 and not head:
                    break
                q = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=False,
                                         accuracy_level=accuracy_level, **which)
                q.process()
                model = q.model.model
            return model
        from onnxruntime.quantization import QuantType, quantize_dynamic

        src, dst = work / "fp32.onnx", work / "int8.onnx"
        onnx.save_model(model, str(src), save_as_external_data=True, location="fp32.onnx.data")
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                         use_external_data_format=True)
        return onnx.load(str(dst))


def optimum_io(model: Any, num_layers: int) -> IOSpec:
    """The manifest's ``io`` for optimum's graph: its names, checked against what it has."""
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    past_key = tuple(f"past_key_values.{i}.key" for i in range(num_layers))
    past_value = tuple(f"past_key_values.{i}.value" for i in range(num_layers))
    present_key = tuple(f"present.{i}.key" for i in range(num_layers))
    present_value = tuple(f"present.{i}.value" for i in range(num_layers))
    missing = [n for n in ("input_ids", "attention_mask", *past_key, *past_value) if n not in inputs]
    missing += [n for n in ("logits", *present_key, *present_value) if n not in outputs]
    if missing:
        raise ExportError(f"optimum's graph has no {missing[0]} (edgelm runs graphs with a past KV cache)")
    domains = tuple(sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}))
    return IOSpec(model_file=MODEL_FILE, kv_dtype=KVDtype.FLOAT32, input_ids="input_ids", seqlens_k="",
                  total_sequence_length="", logits_rows="", attention_mask="attention_mask",
                  position_ids="position_ids" if "position_ids" in inputs else "",
                  past_key=past_key, past_value=past_value, present_key=present_key, present_value=present_value,
                  kv_shared_buffer=False, operator_domains=domains,
                  notes={"graph": "optimum's ONNX exporter (text-generation-with-past)",
                         "logits": "every position", "position_handling": "attention_mask and position_ids"})


def weight_bytes(model: Any) -> dict[str, int]:
    """Bytes of the initializers by kind: the float32 embedding table, the quantized
    linears' weights, their scales, the rest."""
    kinds = {"embeddings": 0, "linears": 0, "scales": 0, "other": 0}
    for init in model.graph.initializer:
        nbytes = len(init.raw_data) if init.raw_data else _external_bytes(init)
        n = init.name
        if "embed_tokens" in n:
            kinds["embeddings"] += nbytes
        elif n.endswith(("_scale", "_scales")) or "_zero_point" in n:
            kinds["scales"] += nbytes
        elif re.search(r"_Q\d+$|_quantized$", n) or (len(init.dims) == 2 and min(init.dims) > 1):
            kinds["linears"] += nbytes
        else:
            kinds["other"] += nbytes
    kinds["total"] = sum(kinds.values())
    return kinds


def _external_bytes(init: Any) -> int:
    from onnx import numpy_helper

    for e in init.external_data:
        if e.key == "length":
            return int(e.value)
    return int(numpy_helper.to_array(init).nbytes)


def work_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="edgelm-optimum-")
