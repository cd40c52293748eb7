"""BlockQuantMatMul and Attention nodes whose attributes disagree with their tensors (as a
hostile or corrupt model folder may hold): each is an ONNX Runtime error naming the input,
never a crash or a read past a tensor. Every case runs in a child process, so a segfault
shows as a signal instead of killing the test run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

ort = pytest.importorskip("onnxruntime")

from edgelm.runtime import ortops  # noqa: E402

pytestmark = pytest.mark.skipif(ortops.library_path() is None, reason="edgelm._ortops was not built")

CHILD = textwrap.dedent('''
    import sys, numpy as np, onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from edgelm.export.graph import kernel_blocks
    from edgelm.export.quantize import quantize_asym, quantize_sym
    from edgelm.runtime import ortops
    case = sys.argv[1]
    n, k, bits = 40, 64, 4
    w = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
    qw = quantize_asym(w, 4) if "sym" not in case else quantize_sym(w, 8 if "8" in case else 4)
    packed = qw.packed()
    scales, mins = kernel_blocks(qw)
    attrs = dict(K=k, N=n, bits=qw.bits, block_size=32)
    if case == "n_huge": attrs["N"] = 10**7
    if case == "n_past_int": attrs["N"] = 2**40
    if case == "bits_4_to_8": attrs["bits"] = 8
    if case.endswith("bits_8_to_4"): attrs["bits"] = 4
    if case == "short_qweight": packed = packed.reshape(-1)[:-7].copy()
    if case == "few_rows": packed = packed[: n // 2].copy()
    if case == "short_scales": scales = scales.reshape(-1)[:-1].copy()
    if case == "short_mins": mins = mins.reshape(-1)[:-4].copy()
    if case == "k_wrong": attrs["K"] = 128
    dynamic = case == "dynamic"
    inits = [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "S")]
    inputs = ["A", "B", "S"]
    if mins is not None:
        inits.append(numpy_helper.from_array(mins, "O"))
        inputs.append("O")
    nodes, graph_inputs = [], [helper.make_tensor_value_info("A", TensorProto.FLOAT, None)]
    if dynamic:  # qweight = Slice(B, 0, end) with end fed at run time (one row short)
        inits += [numpy_helper.from_array(np.array([0], np.int64), "zero")]
        nodes.append(helper.make_node("Slice", ["B", "zero", "END"], ["Bs"]))
        graph_inputs.append(helper.make_tensor_value_info("END", TensorProto.INT64, [1]))
        inputs[1] = "Bs"
    nodes.append(helper.make_node(ortops.OP_TYPE, inputs, ["Y"], domain=ortops.DOMAIN, **attrs))
    graph = helper.make_graph(nodes, "g", graph_inputs,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(ortops.DOMAIN, 1)])
    so = ort.SessionOptions()
    ortops.register(so)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # the ORT error: what the runtime turns into one line
        print("ERROR at load", str(e).splitlines()[-1])
        sys.exit(0)
    try:
        for m in (1, 3, 16):
            feeds = {"A": np.ones((m, attrs["K"]), np.float32)}
            if dynamic:
                feeds["END"] = np.array([n - 1], np.int64)
            sess.run(None, feeds)
    except Exception as e:
        print("ERROR at run", str(e).splitlines()[-1])
        sys.exit(0)
    print("RAN")
''')


def _run(case: str) -> str:
    proc = subprocess.run([sys.executable, "-c", CHILD, case], capture_output=True, text=True, timeout=120)
    assert proc.returncode >= 0, f"{case}: the operator crashed the process (signal {-proc.returncode})"
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


@pytest.mark.parametrize("case, message", [
    ("n_huge", "qweight must be"), ("n_past_int", "below 2^31"), ("bits_4_to_8", "qweight must be"),
    ("bits_8_to_4", "qweight must be"), ("short_qweight", "qweight must be"), ("few_rows", "qweight must be"),
    ("short_scales", "scales must"), ("short_mins", "mins must"), ("k_wrong", "K"),
])
def test_block_quant_matmul_checks_every_input(case: str, message: str) -> None:
    out = _run(case.replace("bits_8_to_4", "sym8_bits_8_to_4") if case == "bits_8_to_4" else case)
    assert out.startswith("ERROR"), f"{case} ran without an error: {out}"
    assert message in out
    # The weights are constant initializers: checked when the kernel is created, so the
    # folder fails at load (a K that disagrees with them too), not in the middle of a reply.
    assert out.startswith("ERROR at load"), out


def test_weights_computed_by_the_graph_are_checked_on_every_call() -> None:
    # qweight is not a constant here (a Slice of one whose end comes from an input), so the
    # operator cannot check it at load: a short slice is refused when it runs.
    out = _run("dynamic")
    assert out.startswith("ERROR at run") and out.endswith("qweight must be [N, K/32, 16] uint8 for bits=4"), out


def test_matching_inputs_still_run() -> None:
    assert _run("ok") == "RAN"
