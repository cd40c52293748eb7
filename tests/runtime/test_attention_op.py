"""edgelm's Attention operator (kernels/ortops/attention.c) against ONNX Runtime's
GroupQueryAttention, the operator it replaces, on the same inputs.

Both run with the KV cache bound in place (past and present one buffer, as the runtime
binds it) through a prompt, decode steps and a chunk after a rewind; outputs and the
cache rows must agree, up to edgelm's cache being float16 (GQA's is float32). A float64
reference on the float16 rows checks the arithmetic itself tightly. Each
instruction-set path runs in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from edgelm.runtime import ortops  # noqa: E402

pytestmark = pytest.mark.skipif(ortops.library_path() is None, reason="edgelm._ortops was not built")

H, G, D, CAP, POS = 6, 2, 64, 48, 64


def _model(op: str, heads: int = H, kv: int = G, window: int = 0, cap: int = CAP) -> bytes:
    ms = op == "GroupQueryAttention"
    attrs: dict[str, object] = {"num_heads": heads, "kv_num_heads": kv, "scale": float(D ** -0.5)}
    if window:  # the same window: a query sees itself and the window - 1 keys before it
        attrs["local_window_size" if ms else "local_window"] = window
    if ms:
        attrs.update(do_rotary=1, rotary_interleaved=0)
        inputs = ["qkv", "", "", "pk", "pv", "seqlens_k", "total", "cos", "sin"]
    else:
        inputs = ["qkv", "pk", "pv", "seqlens_k", "total", "cos", "sin"]
    node = helper.make_node(op, inputs, ["out", "k", "v"], domain="com.microsoft" if ms else ortops.DOMAIN, **attrs)
    f = TensorProto.FLOAT
    c = TensorProto.FLOAT if ms else TensorProto.FLOAT16
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("qkv", f, None),
         helper.make_tensor_value_info("pk", c, ["B", kv, cap, D]),
         helper.make_tensor_value_info("pv", c, ["B", kv, cap, D]),
         helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["B"]),
         helper.make_tensor_value_info("total", TensorProto.INT32, []),
         helper.make_tensor_value_info("cos", f, [POS, D // 2]),
         helper.make_tensor_value_info("sin", f, [POS, D // 2])],
        [helper.make_tensor_value_info("out", f, None), helper.make_tensor_value_info("k", c, None),
         helper.make_tensor_value_info("v", c, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1),
                                                    helper.make_opsetid(ortops.DOMAIN, 1)])
    return model.SerializeToString()


def _rotary() -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / (10000.0 ** (np.arange(0, D, 2) / D))
    ang = np.outer(np.arange(POS), inv)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


class _Runner:
    """One session with its cache bound in place, stepped like edgelm's DecoderSession."""

    def __init__(self, op: str, threads: int = 2, window: int = 0, cap: int = CAP) -> None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        assert ortops.register(so)
        self.sess = ort.InferenceSession(_model(op, window=window, cap=cap), so, providers=["CPUExecutionProvider"])
        self.cos, self.sin = _rotary()
        rng = np.random.default_rng(7)  # stale rows past the sequence must never be read
        dt = np.float32 if op == "GroupQueryAttention" else np.float16
        self.k = ort.OrtValue.ortvalue_from_numpy((rng.standard_normal((1, G, cap, D)) * 50).astype(dt))
        self.v = ort.OrtValue.ortvalue_from_numpy((rng.standard_normal((1, G, cap, D)) * 50).astype(dt))
        self.b = self.sess.io_binding()
        self.b.bind_ortvalue_input("pk", self.k)
        self.b.bind_ortvalue_input("pv", self.v)
        self.b.bind_ortvalue_output("k", self.k)
        self.b.bind_ortvalue_output("v", self.v)
        self.b.bind_cpu_input("cos", self.cos)
        self.b.bind_cpu_input("sin", self.sin)

    def step(self, qkv: np.ndarray, past: int) -> np.ndarray:
        total = past + qkv.shape[1]
        self.b.bind_cpu_input("qkv", qkv)
        self.b.bind_cpu_input("seqlens_k", np.array([total - 1], np.int32))
        self.b.bind_cpu_input("total", np.array(total, np.int32))
        out = np.full((1, qkv.shape[1], H * D), np.nan, np.float32)  # its shape follows the step's tokens
        self.b.bind_ortvalue_output("out", ort.OrtValue.ortvalue_from_numpy(out))
        self.sess.run_with_iobinding(self.b)
        return out


def _schedule() -> list[tuple[int, int]]:
    """(past, new tokens): a 13-token prompt, 5 decode steps, a rewind to 9 and a 4-token
    chunk, decode to the cache's end."""
    steps = [(0, 13)] + [(13 + i, 1) for i in range(5)] + [(9, 4)]
    steps += [(13 + i, 1) for i in range(CAP - 13)]
    return steps


def _compare(window: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ref, ours = _Runner("GroupQueryAttention", window=window), _Runner("Attention", window=window)
    worst_out = 0.0
    total = 0
    for past, n in _schedule():
        qkv = rng.standard_normal((1, n, (H + 2 * G) * D)).astype(np.float32)
        a, b = ref.step(qkv, past), ours.step(qkv, past)
        worst_out = max(worst_out, float(np.abs(a - b).max() / np.abs(a).max()))
        total = past + n
    # Cache rows: GQA's float32 values rounded to float16 are edgelm's (keys within an ulp:
    # the rotation's float rounding may differ before the float16 one).
    ref_k, ref_v = ref.k.numpy()[:, :, :total], ref.v.numpy()[:, :, :total]
    k_err = float((np.abs(ref_k - ours.k.numpy()[:, :, :total].astype(np.float32)) / (np.abs(ref_k) + 1e-3)).max())
    v_same = bool(np.array_equal(ref_v.astype(np.float16), ours.v.numpy()[:, :, :total]))
    return {"out": worst_out, "k": k_err, "v_rounded_equal": v_same}


WINDOW, RING = 5, 9  # a ring of the window and 4 rows: steps of up to 5 tokens once it wraps


def _ring_schedule() -> list[tuple[int, int]]:
    """(past, new tokens) as the runtime steps a window layer's ring: a 13-token prompt in
    chunks of at most RING - WINDOW + 1, decode, a rewind by 3 (the keys it needs still in
    the ring), a 4-token chunk, decode to the rotary table's end (past the ring many times)."""
    steps = [(0, 5), (5, 5), (10, 3)] + [(13 + i, 1) for i in range(5)] + [(15, 4)]
    return steps + [(19 + i, 1) for i in range(POS - 19)]


def _ring_matches_whole_cache() -> bool:
    """A window layer's ring of RING rows against a cache of every position: the same
    outputs, bit for bit, every step (each query reads the same keys in the same order)."""
    rng = np.random.default_rng(5)
    whole, ring = _Runner("Attention", window=WINDOW, cap=POS), _Runner("Attention", window=WINDOW, cap=RING)
    for past, n in _ring_schedule():
        qkv = rng.standard_normal((1, n, (H + 2 * G) * D)).astype(np.float32)
        if not np.array_equal(whole.step(qkv, past), ring.step(qkv, past)):
            return False
    return True


def _special_values_stored_as_numpy_rounds_them() -> bool:
    """Values written to the cache round to float16 as numpy does: ties to even, subnormals,
    zero signs, the overflow edge (65504 stays, 65520 goes to inf), inf and nan."""
    so = ort.SessionOptions()
    assert ortops.register(so)
    sess = ort.InferenceSession(_model("Attention"), so, providers=["CPUExecutionProvider"])
    cos, sin = _rotary()
    special = np.array([0.0, -0.0, 1.0, 1.00048828125, 1.00146484375, 65504.0, 65519.99, 65520.0, -70000.0, 1e-8,
                        6e-8, 3e-8, 2.9802322e-08, -5.9604645e-08, 6.1e-5, 6.103515625e-05, np.inf, -np.inf, np.nan,
                        0.1, -0.3333, 1234.5678], np.float32)
    v_new = np.resize(special, D).astype(np.float32)
    rng = np.random.default_rng(3)
    v_new[len(special):] = rng.standard_normal(D - len(special)) * 10.0 ** rng.integers(-6, 5, D - len(special))
    qkv = np.zeros((1, 1, (H + 2 * G) * D), np.float32)
    qkv[0, 0, (H + G) * D:(H + G + 1) * D] = v_new
    zeros = np.zeros((1, G, CAP, D), np.float16)
    _, _, v = sess.run(None, {"qkv": qkv, "pk": zeros, "pv": zeros, "seqlens_k": np.array([0], np.int32),
                              "total": np.array(1, np.int32), "cos": cos, "sin": sin})
    return bool(np.array_equal(v[0, 0, 0].view(np.uint16), v_new.astype(np.float16).view(np.uint16)))


def _ok(err: dict[str, float]) -> bool:
    # float16 keeps 11 bits: the cache rows within 2^-11 relative, the outputs within ~1e-3.
    return err["out"] < 2e-3 and err["k"] <= 2.0 ** -10 and err["v_rounded_equal"] is True


@pytest.mark.parametrize("window", [0, 5])
def test_matches_group_query_attention_through_prompt_decode_and_rewind(window: int) -> None:
    """With a sliding window (Gemma 3's local layers) too: the 13-token prompt and the decode
    run past a 5-key window."""
    err = _compare(window)
    assert _ok(err), err


@pytest.mark.parametrize("isa", ortops.isa_levels()[:2])  # portable, and AVX2 (x86) or NEON (aarch64)
def test_each_instruction_set_path_matches(isa: str) -> None:
    code = f"""
import json, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_attention_op as t
print(json.dumps(dict(t._compare(), rounding=t._special_values_stored_as_numpy_rounds_them(),
                      ring=t._ring_matches_whole_cache())))
"""
    env = dict(os.environ, EDGELM_ORTOPS_ISA=isa)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    err = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _ok(err) and err["rounding"] is True and err["ring"] is True, err


def test_a_window_layers_ring_gives_the_bits_of_a_whole_cache() -> None:
    assert _ring_matches_whole_cache()


@pytest.mark.parametrize("past, n, message", [
    (RING - 2, 6, "too long for the window layer's ring"),  # 6 + 5 - 1 > 9 rows, past the ring's end
    (RING, 1, None),  # one token past the end of the ring: fine
])
def test_a_step_the_ring_cannot_hold_is_an_error(past: int, n: int, message: str | None) -> None:
    """A chunk whose rows would overwrite keys its own first query needs is refused, not
    computed wrong; a cache that is not a window layer's cannot wrap at all."""
    runner = _Runner("Attention", window=WINDOW, cap=RING)
    qkv = np.zeros((1, n, (H + 2 * G) * D), np.float32)
    if message is None:
        assert np.isfinite(runner.step(qkv, past)).all()
    else:
        with pytest.raises(Exception, match=message):
            runner.step(qkv, past)
    with pytest.raises(Exception, match="does not fit the KV cache"):
        _Runner("Attention", cap=RING).step(qkv[:, :1], RING)


def test_present_not_bound_in_place_carries_the_past_over() -> None:
    so = ort.SessionOptions()
    assert ortops.register(so)
    sess = ort.InferenceSession(_model("Attention"), so, providers=["CPUExecutionProvider"])
    cos, sin = _rotary()
    rng = np.random.default_rng(1)
    pk = rng.standard_normal((1, G, CAP, D)).astype(np.float16)
    pv = rng.standard_normal((1, G, CAP, D)).astype(np.float16)
    qkv = rng.standard_normal((1, 1, (H + 2 * G) * D)).astype(np.float32)
    feeds = {"qkv": qkv, "pk": pk, "pv": pv, "seqlens_k": np.array([5], np.int32), "total": np.array(6, np.int32),
             "cos": cos, "sin": sin}
    out, k, v = sess.run(None, feeds)
    assert np.array_equal(k[:, :, :5], pk[:, :, :5]) and np.array_equal(v[:, :, :5], pv[:, :, :5])
    assert np.array_equal(v[0, :, 5], qkv[0, 0, (H + G) * D:].reshape(G, D).astype(np.float16))
    # The one new query against keys 0..5 (as stored, float16): a float64 reference.
    half = D // 2
    q = qkv[0, 0, :H * D].reshape(H, D).astype(np.float64)
    q = np.concatenate([q[:, :half] * cos[5] - q[:, half:] * sin[5], q[:, half:] * cos[5] + q[:, :half] * sin[5]], 1)
    keys = k[0, :, :6].astype(np.float64)
    k_new = qkv[0, 0, H * D:(H + G) * D].reshape(G, D).astype(np.float64)
    k_new = np.concatenate([k_new[:, :half] * cos[5] - k_new[:, half:] * sin[5],
                            k_new[:, half:] * cos[5] + k_new[:, :half] * sin[5]], 1)
    assert np.allclose(keys[:, 5], k_new, rtol=2.0 ** -10, atol=1e-7)  # rotated, then float16
    for h in range(H):
        s = keys[h // (H // G)] @ q[h] * D ** -0.5
        w = np.exp(s - s.max())
        want = (w / w.sum()) @ v[0, h // (H // G), :6].astype(np.float64)
        assert np.allclose(out[0, 0, h * D:(h + 1) * D], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feeds_change, message", [
    ({"seqlens_k": np.array([3], np.int32)}, "seqlens_k must be total_sequence_length - 1"),
    ({"total": np.array(CAP + 1, np.int32), "seqlens_k": np.array([CAP], np.int32)}, "does not fit the KV cache"),
    ({"seqlens_k": np.array([-2], np.int32), "total": np.array(-1, np.int32)}, "does not fit the KV cache"),
    ({"qkv": np.zeros((1, 1, 5), np.float32)}, "last dimension of qkv"),
    ({"qkv": np.zeros((2, 1, (H + 2 * G) * D), np.float32), "seqlens_k": np.array([5, 5], np.int32)}, "qkv's batch"),
    ({"seqlens_k": np.array([5, 5], np.int32)}, "one value per sequence"),
    ({"qkv": np.zeros((0, 1, (H + 2 * G) * D), np.float32), "pk": np.zeros((0, G, CAP, D), np.float16),
      "pv": np.zeros((0, G, CAP, D), np.float16), "seqlens_k": np.zeros(0, np.int32)}, "1 to 256 sequences"),
])
def test_bad_inputs_are_errors_not_crashes(feeds_change: dict[str, np.ndarray], message: str) -> None:
    so = ort.SessionOptions()
    assert ortops.register(so)
    sess = ort.InferenceSession(_model("Attention"), so, providers=["CPUExecutionProvider"])
    cos, sin = _rotary()
    feeds = {"qkv": np.zeros((1, 1, (H + 2 * G) * D), np.float32), "pk": np.zeros((1, G, CAP, D), np.float16),
             "pv": np.zeros((1, G, CAP, D), np.float16), "seqlens_k": np.array([5], np.int32),
             "total": np.array(6, np.int32), "cos": cos, "sin": sin}
    feeds.update(feeds_change)
    with pytest.raises(Exception, match=message):
        sess.run(None, feeds)


def test_heads_not_a_multiple_of_kv_heads_are_refused_at_load() -> None:
    so = ort.SessionOptions()
    assert ortops.register(so)
    with pytest.raises(Exception, match="multiple of kv_num_heads"):
        ort.InferenceSession(_model("Attention", heads=5, kv=2), so, providers=["CPUExecutionProvider"])


def test_a_batch_gives_each_sequence_the_bits_of_a_batch_of_one() -> None:
    """Three sequences of different lengths in one call (decode, then a 3-token chunk):
    each one's outputs and cache rows equal, bit for bit, a batch-of-one call on its own
    cache; the rows after each sequence's end are untouched."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    assert ortops.register(so)
    sess = ort.InferenceSession(_model("Attention"), so, providers=["CPUExecutionProvider"])
    cos, sin = _rotary()
    rng = np.random.default_rng(11)
    lengths = np.array([5, 17, 1])
    k0 = (rng.standard_normal((3, G, CAP, D))).astype(np.float16)
    v0 = (rng.standard_normal((3, G, CAP, D))).astype(np.float16)
    for s in (1, 3):
        qkv = rng.standard_normal((3, s, (H + 2 * G) * D)).astype(np.float32)
        ends = lengths + s
        out, k, v = sess.run(None, {"qkv": qkv, "pk": k0, "pv": v0, "seqlens_k": (ends - 1).astype(np.int32),
                                    "total": np.array(ends.max(), np.int32), "cos": cos, "sin": sin})
        for b in range(3):
            o1, k1, v1 = sess.run(None, {"qkv": qkv[b:b + 1], "pk": k0[b:b + 1], "pv": v0[b:b + 1],
                                         "seqlens_k": np.array([ends[b] - 1], np.int32),
                                         "total": np.array(ends[b], np.int32), "cos": cos, "sin": sin})
            assert np.array_equal(out[b:b + 1], o1) and np.array_equal(k[b:b + 1], k1) and np.array_equal(v[b:b + 1], v1)
            assert np.array_equal(k[b, :, ends[b]:], k0[b, :, ends[b]:]), "a row past the sequence was written"
        lengths = ends


def test_a_negative_window_is_refused_at_load() -> None:
    """local_window comes from a downloaded graph: a negative one is an error, not a read
    before the cache."""
    so = ort.SessionOptions()
    assert ortops.register(so)
    with pytest.raises(Exception, match="local_window must be >= 0"):
        ort.InferenceSession(_model("Attention", window=-4), so, providers=["CPUExecutionProvider"])
