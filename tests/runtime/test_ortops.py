"""BlockQuantMatMul (kernels/ortops/qmatmul.c) against a float64 numpy reference.

Shapes cover decode (M = 1), the prefill tile (M multiple of 4) and its remainders,
N that is not a multiple of 4 (the portable tail), 4-bit with and without block
offsets and 8-bit. The portable C path (what a CPU without AVX2 runs) is checked in a
child process per instruction-set path (EDGELM_ORTOPS_ISA=portable / avx2 / avx512).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgelm.export.graph import kernel_blocks  # noqa: E402
from edgelm.export.quantize import QuantizedWeight, quantize_asym, quantize_sym  # noqa: E402
from edgelm.runtime import ortops  # noqa: E402

pytestmark = pytest.mark.skipif(ortops.library_path() is None, reason="edgelm._ortops was not built")

# |Y - reference| / max|reference|: 16-bit activations leave ~1e-5; int8 activations
# (MatMulNBits' accuracy level 4) leave ~1e-2.
TOL = 3e-4


def _model(w: QuantizedWeight, block_size: int = 32, swiglu: bool = False) -> bytes:
    n, k = w.shape
    scales, mins = kernel_blocks(w)
    inits = [numpy_helper.from_array(w.packed(), "B"), numpy_helper.from_array(scales, "S")]
    inputs = ["A", "B", "S"]
    if mins is not None:
        inits.append(numpy_helper.from_array(mins, "O"))
        inputs.append("O")
    node = helper.make_node(ortops.OP_TYPE, inputs, ["Y"], domain=ortops.DOMAIN, K=k, N=n, bits=w.bits,
                            block_size=block_size, **({"swiglu": 1} if swiglu else {}))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(ortops.DOMAIN, 1)])
    return model.SerializeToString()


def _session(model: bytes, threads: int = 2) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    assert ortops.register(so)
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _half_exact(w: QuantizedWeight) -> QuantizedWeight:
    """``w`` with scales and mins that float16 holds exactly (as GGUF's blocks are), so the
    reference is exactly the weights the operator receives."""
    scales = w.scales.astype(np.float16).astype(np.float32)
    offsets = None
    if w.offsets is not None:
        mins = (w.offsets - w.zero_point * w.scales).astype(np.float16).astype(np.float32)
        offsets = mins + np.float32(w.zero_point) * scales
    return QuantizedWeight(w.bits, w.block_size, w.q, scales, offsets, w.method)


def _weights(kind: str, n: int, k: int, seed: int = 0) -> QuantizedWeight:
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32) * 0.05
    return _half_exact({"q4_offsets": lambda: quantize_asym(w, 4), "q4_sym": lambda: quantize_sym(w, 4),
                        "q8_sym": lambda: quantize_sym(w, 8), "q8_offsets": lambda: quantize_asym(w, 8)}[kind]())


def _activations(m: int, k: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A few large channels, as in real hidden states.
    return (rng.standard_normal((m, k)) * np.where(rng.random(k) < 0.03, 30.0, 1.0)).astype(np.float32)


def _rel_err(y: np.ndarray, a: np.ndarray, w: QuantizedWeight) -> float:
    ref = a.astype(np.float64) @ w.dequantize().astype(np.float64).T
    return float(np.abs(y - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("kind", ["q4_offsets", "q4_sym", "q8_sym", "q8_offsets"])
@pytest.mark.parametrize("m", [1, 3, 4, 9, 64])
@pytest.mark.parametrize("k", [160, 192])  # 5 blocks (an odd one left after pairs) and 6
def test_matches_numpy(kind: str, m: int, k: int) -> None:
    w = _weights(kind, 202, k)  # N = 202: not a multiple of 4
    a = _activations(m, k)
    y = _session(_model(w)).run(None, {"A": a})[0]
    assert y.shape == (m, 202)
    assert _rel_err(y, a, w) < TOL


def test_scales_and_mins_go_to_float16_exactly() -> None:
    """GGUF Q4_1 keeps d and m in float16: the operator's inputs carry them unchanged."""
    w = _weights("q4_offsets", 8, 64)
    scales, mins = kernel_blocks(w)
    assert scales.dtype == np.float16 and mins is not None and mins.dtype == np.float16
    assert np.array_equal(scales.astype(np.float32), w.scales)
    want = (w.offsets - 8 * w.scales).astype(np.float16)
    assert np.array_equal(mins.reshape(2, 2, 4).transpose(0, 2, 1).reshape(8, 2), want)


def test_scales_past_float16_are_an_export_error() -> None:
    from edgelm.errors import ExportError

    w = _weights("q8_sym", 4, 32)
    big = QuantizedWeight(8, 32, w.q, w.scales * 1e9, None, w.method)
    with pytest.raises(ExportError, match="float16"):
        kernel_blocks(big)


@pytest.mark.parametrize("kind", ["q4_offsets", "q8_sym"])
@pytest.mark.parametrize("m", [1, 6, 9, 20])  # decode rows, and prefill rows over several activation tasks
def test_swiglu_takes_gate_and_up(kind: str, m: int) -> None:
    """swiglu=1: A = [gate | up], the product takes silu(gate) * up (the MLP's down projection)."""
    w = _weights(kind, 96, 160)
    gate_up = (np.random.default_rng(m).standard_normal((m, 320)) * 3).astype(np.float32)
    gate, up = gate_up[:, :160].astype(np.float64), gate_up[:, 160:].astype(np.float64)
    act = gate / (1.0 + np.exp(-gate)) * up
    y = _session(_model(w, swiglu=True)).run(None, {"A": gate_up})[0]
    ref = act @ w.dequantize().astype(np.float64).T
    assert np.abs(y - ref).max() / np.abs(ref).max() < TOL


def test_swiglu_needs_twice_k() -> None:
    s = _session(_model(_weights("q4_sym", 32, 64), swiglu=True))
    with pytest.raises(Exception, match="must be 2K"):
        s.run(None, {"A": np.zeros((1, 64), np.float32)})


def test_leading_dimensions_are_kept() -> None:
    w = _weights("q4_offsets", 64, 96)
    a = _activations(6, 96).reshape(1, 6, 96)
    y = _session(_model(w)).run(None, {"A": a})[0]
    assert y.shape == (1, 6, 64)
    assert _rel_err(y.reshape(6, 64), a.reshape(6, 96), w) < TOL


def test_more_precise_than_int8_activations() -> None:
    """The reason the operator exists next to MatMulNBits: at the same weights, 16-bit
    activations land far closer to the float product than MatMulNBits' int8 ones."""
    w = _weights("q4_sym", 256, 576)
    a = _activations(1, 576)
    mine = _session(_model(w)).run(None, {"A": a})[0]
    node = helper.make_node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft", K=576, N=256, bits=4,
                            block_size=32, accuracy_level=4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w.packed(), "B"), numpy_helper.from_array(w.scales, "S")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": a})[0]
    assert _rel_err(mine, a, w) * 20 < _rel_err(theirs, a, w)


def test_same_result_with_any_thread_count() -> None:
    """Each output is computed whole by one task: no reduction order depends on threads."""
    w = _weights("q4_offsets", 300, 192)
    a = _activations(5, 192)
    one = _session(_model(w), threads=1).run(None, {"A": a})[0]
    two = _session(_model(w), threads=2).run(None, {"A": a})[0]
    assert np.array_equal(one, two)


@pytest.mark.parametrize("isa", ortops.isa_levels())
def test_each_instruction_set_path_matches_numpy(isa: str) -> None:
    """The kernels a CPU runs depend on what it has (x86: AVX-512 VNNI, AVX2; aarch64:
    dotprod, NEON; else portable C); EDGELM_ORTOPS_ISA caps the choice, so each path is
    checked here; a level this CPU lacks is skipped, not run at a lower level."""
    code = f"""
import json, sys, numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_ortops as t
from edgelm.runtime import ortops
out = {{"isa": ortops.active_isa()}}
for kind in ("q4_offsets", "q4_sym", "q8_sym", "q8_offsets"):
    for m in (1, 5, 9):
        for k in (96, 160):
            w = t._weights(kind, 70, k); a = t._activations(m, k)
            out[f"{{kind}}/{{m}}/{{k}}"] = t._rel_err(t._session(t._model(w)).run(None, {{"A": a}})[0], a, w)
print(json.dumps(out))
"""
    env = dict(os.environ, EDGELM_ORTOPS_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    if errors.pop("isa") != isa:
        pytest.skip(f"this CPU has no {isa}")
    assert len(errors) == 24 and max(errors.values()) < TOL, errors


_ARM = ortops.isa_levels()[1:2] == ["neon"]

_EXACT_CHILD = f"""
import json, sys, numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_ortops as t
from edgelm.runtime import ortops
out = {{"isa": ortops.active_isa()}}
for kind in ("q4_offsets", "q4_sym", "q8_sym", "q8_offsets"):
    for m in (1, 3, 6, 9):
        for n, k in ((70, 96), (8, 160), (33, 64)):
            w = t._weights(kind, n, k, seed=n + k); a = t._activations(m, k, seed=m)
            y = t._session(t._model(w), threads=2).run(None, {{"A": a}})[0]
            out[f"{{kind}}/{{m}}/{{n}}/{{k}}"] = y.view(np.uint32).ravel().tolist()
print(json.dumps(out))
"""


def _outputs_at(isa: str) -> dict[str, list[int]]:
    proc = subprocess.run([sys.executable, "-c", _EXACT_CHILD], env=dict(os.environ, EDGELM_ORTOPS_ISA=isa),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _ARM, reason="the NEON and dotprod kernels exist on aarch64 only")
def test_arm_paths_are_bit_identical_to_the_portable_path() -> None:
    """NEON (SMLAL), dotprod (SDOT/UDOT on split activation bytes) and i8mm (SMMLA/USMMLA,
    four activation rows a pass, the rest dotprod's) compute the same int32 block sums as
    the portable C and scale them in its order: every output bit for bit, for 4- and 8-bit
    codes with and without mins, decode and prefill rows (M = 6, 9: a pass of four and the
    rows after it), N not a multiple of 4. Each level must really run (the CPU may lack one:
    then the test says so and fails; the lane runs it under qemu -cpu max)."""
    ref = _outputs_at("portable")
    assert ref.pop("isa") == "portable"
    for isa in ("neon", "dotprod", "i8mm"):
        got = _outputs_at(isa)
        assert got.pop("isa") == isa, f"EDGELM_ORTOPS_ISA={isa} did not take effect on this CPU"
        bad = [key for key in ref if ref[key] != got[key]]
        assert not bad, f"{isa}: outputs differ from portable in {bad[:5]}"


@pytest.mark.skipif(ortops.isa_levels()[1:2] != ["avx2"], reason="the AVX2 and AVX-512 kernels exist on x86 only")
def test_decode_layout_matches_the_avx2_path() -> None:
    """Decode rows with N a multiple of 4 take the AVX-512 decode layout (4-bit: four blocks a
    step, then pairs and an odd block for K/32 = 4q + 1, 2, 3; 8-bit: codes as stored). Its
    int32 block sums are the AVX2 path's, so the outputs agree to float rounding, and both
    match numpy. Skipped where the CPU lacks AVX-512 VNNI (both runs would take AVX2)."""
    code = f"""
import json, sys, numpy as np
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_ortops as t
from edgelm.runtime import ortops
print(ortops.active_isa())
out = {{}}
for kind in ("q4_offsets", "q4_sym", "q8_sym", "q8_offsets"):
    for m in (1, 3, 7):
        for k in (128, 160, 192, 224):
            for swiglu in (0, 1):
                w = t._weights(kind, 72, k); a = t._activations(m, 2 * k if swiglu else k)
                y = t._session(t._model(w, swiglu=bool(swiglu))).run(None, {{"A": a}})[0]
                out[f"{{kind}}/{{m}}/{{k}}/{{swiglu}}"] = y.ravel().tolist()
print(json.dumps(out))
"""
    runs = {}
    for isa in ("avx2", "avx512"):
        proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, EDGELM_ORTOPS_ISA=isa),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        active, result = proc.stdout.strip().splitlines()[-2:]
        if active != isa:
            pytest.skip(f"this CPU has no {isa}")
        runs[isa] = {key: np.array(v, np.float32) for key, v in json.loads(result).items()}
    assert len(runs["avx512"]) == 96
    for key, y in runs["avx512"].items():
        ref = runs["avx2"][key]
        assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max(), key
        kind, m, k, swiglu = key.split("/")
        w = _weights(kind, 72, int(k))
        a = _activations(int(m), 2 * int(k) if swiglu == "1" else int(k))
        if swiglu == "1":
            g, u = a[:, :int(k)].astype(np.float64), a[:, int(k):].astype(np.float64)
            a = (g / (1.0 + np.exp(-g)) * u).astype(np.float32)
        assert _rel_err(y.reshape(int(m), 72), a, w) < TOL, key


def test_wrong_inner_dimension_is_an_error_not_a_crash() -> None:
    s = _session(_model(_weights("q4_sym", 32, 64)))
    with pytest.raises(Exception, match="last dimension of A must be K"):
        s.run(None, {"A": np.zeros((1, 96), np.float32)})


def test_unsupported_block_size_is_refused_at_load() -> None:
    with pytest.raises(Exception, match="block_size must be 32"):
        _session(_model(_weights("q4_sym", 32, 64), block_size=64))


@pytest.mark.parametrize("kind", ["q4_offsets", "q4_sym", "q8_sym", "q8_offsets"])
@pytest.mark.parametrize("k", [128, 160, 576])
def test_decode_rows_give_each_rows_bits(kind: str, k: int) -> None:
    """Up to PREFILL_ROWS - 1 rows (drafted tokens verified in one pass) take the decode
    kernels, which may share weight loads between rows: every row's output must be the bits
    of that row run alone (M = 1), whichever rows it was paired with."""
    w = _weights(kind, 72, k)
    s = _session(_model(w))
    a = _activations(7, k, seed=k)
    alone = [s.run(None, {"A": a[i:i + 1]})[0] for i in range(7)]
    for m in range(2, 8):
        y = s.run(None, {"A": a[:m]})[0]
        for i in range(m):
            assert np.array_equal(y[i].view(np.uint32), alone[i][0].view(np.uint32)), (m, i)
