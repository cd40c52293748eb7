"""Memory model: its analytic parts against exports, and a check against measured RSS."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelm.manifest import KVDtype, Quant, read_manifest
from edgelm.profiler.memory import estimate_memory, measure_peak_rss, weights_bytes_for

from ..conftest import TINY_VARIANTS


@pytest.mark.parametrize(("quant", "kernel"), [("fp32", "edgelm"), ("int8", "edgelm"), ("int4", "edgelm"),
                                               ("int8", "matmulnbits"), ("int4", "matmulnbits")])
@pytest.mark.parametrize("variant", ["llama-tied", "llama-untied"])
def test_weight_bytes_match_what_export_writes(variant: str, quant: str, kernel: str, tiny_models: dict[str, Path],
                                               tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgelm.export import ExportConfig, export

    out = tmp_path / quant
    export(str(tiny_models[variant]), out, ExportConfig(quant=quant, verify=False, progress=False, kernel=kernel))
    m = read_manifest(out)
    # Exact but for the graph's few shape constants (under a kilobyte).
    assert weights_bytes_for(TINY_VARIANTS[variant], Quant(quant), linear_kernel=kernel) == pytest.approx(
        m.weights_bytes["total"], abs=1024)


def test_kv_cache_term() -> None:
    """float16 under edgelm's Attention (quantized, edgelm kernel: the default), float32
    under GroupQueryAttention (fp32, MatMulNBits), and the manifest's word over both."""
    a = TINY_VARIANTS["llama-tied"]
    values = 2 * a.num_layers * a.num_kv_heads * a.head_dim * 100
    assert estimate_memory(a, Quant.INT4, context=100).kv_cache_bytes == values * 2
    assert estimate_memory(a, Quant.INT8, context=100, linear_kernel="edgelm").kv_cache_bytes == values * 2
    assert estimate_memory(a, Quant.INT4, context=100, linear_kernel="matmulnbits").kv_cache_bytes == values * 4
    assert estimate_memory(a, Quant.FP32, context=100).kv_cache_bytes == values * 4
    assert estimate_memory(a, Quant.INT4, context=100, kv_dtype="float32").kv_cache_bytes == values * 4


@pytest.mark.parametrize("quant, kernel", [("int4", "edgelm"), ("int4", "matmulnbits"), ("fp32", "edgelm")])
def test_runtime_allocates_the_kv_cache_the_manifest_and_the_model_declare(tmp_path: Path, quant: str, kernel: str,
                                                                           tiny_models: dict[str, Path]) -> None:
    pytest.importorskip("torch")
    import edgelm
    from edgelm.export import ExportConfig, export

    out = tmp_path / "m"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant=quant, verify=False, progress=False, kernel=kernel))
    m = read_manifest(out)
    model = edgelm.load(out, context=64)
    want = KVDtype.FLOAT32 if quant == "fp32" or kernel == "matmulnbits" else KVDtype.FLOAT16
    assert m.kv_dtype is want
    graph_types = {i.type for i in model.session.session.get_inputs() if i.name.startswith("past_key_values.")}
    assert graph_types == {"tensor(float16)" if want is KVDtype.FLOAT16 else "tensor(float)"}
    allocated = sum(buf.nbytes for buf in model.session._caches)
    assert allocated == model.kv_cache_bytes == estimate_memory(
        m.architecture, m.quantization.mode, context=64, linear_kernel=m.quantization.linear_kernel,
        kv_dtype=m.kv_dtype).kv_cache_bytes
    # What a preset of the same quantization and kernel would be estimated at (no manifest).
    assert estimate_memory(m.architecture, m.quantization.mode, context=64,
                           linear_kernel=m.quantization.linear_kernel).kv_cache_bytes == allocated


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int4", "fp32"])
@pytest.mark.parametrize("context", [512, 2048])
def test_estimate_within_15_percent_of_measured_peak_rss(quant: str, context: int, smollm2_folders: dict[str, Path]
                                                         ) -> None:
    folder = smollm2_folders[quant]
    measured = measure_peak_rss(str(folder), context, prompt_tokens=128)
    m = read_manifest(folder)
    est = estimate_memory(m.architecture, m.quantization.mode, context=context,
                          weights_bytes=m.weights_bytes["total"],
                          tokenizer_json_bytes=(folder / "tokenizer.json").stat().st_size, prompt_tokens=128,
                          linear_kernel=m.quantization.linear_kernel, kv_dtype=m.kv_dtype)
    assert abs(est.peak_bytes - measured) / measured <= 0.15, (est.peak_bytes / 1e6, measured / 1e6)
