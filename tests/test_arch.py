"""Architecture facts with one home: the KV cache size, the FFN fit, the reference shapes."""

from __future__ import annotations

import dataclasses

import pytest

from edgelm.arch import ARCH_PRESETS, REFERENCE_SHAPES, KVDtype, fit_ffn, kv_bytes_per_value, shape_for_params
from edgelm.plan.planner import spec_for_params
from edgelm.profiler.report import compare_shapes


def test_kv_cache_bytes_counts_every_value_once() -> None:
    a = ARCH_PRESETS["mobilellm-125m"]  # 30 layers, 3 KV heads of 64
    assert kv_bytes_per_value(KVDtype.FLOAT16) == 2 and kv_bytes_per_value("float32") == 4
    assert a.kv_cache_bytes(100, KVDtype.FLOAT16) == 2 * 30 * 3 * 64 * 100 * 2
    assert a.kv_cache_shape(100) == (1, 3, 100, 64)
    with pytest.raises(ValueError):
        kv_bytes_per_value("int8")


@pytest.mark.parametrize("target", [90e6, 125e6, 333e6, 1.5e9, 7e9])
def test_fit_ffn_is_the_nearest_multiple_of_64(target: float) -> None:
    base = shape_for_params(target)
    fitted = fit_ffn(base, target)
    assert fitted.intermediate_size % 64 == 0
    err = abs(fitted.parameter_count() - target)
    for other in (fitted.intermediate_size - 64, fitted.intermediate_size + 64):
        if other >= 64:
            assert abs(dataclasses.replace(fitted, intermediate_size=other).parameter_count() - target) >= err


def test_a_preset_count_gives_back_the_preset() -> None:
    for name, a in ARCH_PRESETS.items():
        assert shape_for_params(a.parameter_count()) == a, name
    assert spec_for_params(ARCH_PRESETS["mobilellm-350m"].parameter_count(), "int4").arch == ARCH_PRESETS[
        "mobilellm-350m"]
    assert len({a.parameter_count() for a in REFERENCE_SHAPES}) == len(REFERENCE_SHAPES)


def test_planner_and_profiler_fit_the_same_way() -> None:
    """The shape comparison and the planner round the FFN the same way: each compared
    shape is the nearest-to-target FFN width for its layers and width."""
    target = 125e6
    for r in compare_shapes(target, "pixel-8-pro"):
        assert r.model.arch == fit_ffn(r.model.arch, target)


@pytest.mark.parametrize("change,needle", [
    ({"sliding_window": -1}, "sliding_window"),
    ({"sliding_window": 8, "global_layers": [3, 1]}, "global_layers"),
    ({"sliding_window": 8, "global_layers": [9]}, "global_layers"),
    ({"sliding_window": 8, "global_layers": "all"}, "global_layers"),
    ({"rope_local_theta": -5.0}, "rope_local_theta"),
    ({"query_pre_attn_scalar": True}, "query_pre_attn_scalar"),
])
def test_sliding_window_fields_are_checked(change: dict, needle: str) -> None:
    from edgelm.arch import Architecture, Family
    from edgelm.errors import ManifestError

    good = Architecture(Family.GEMMA3, 4, 64, 4, 1, 32, 128, 300, 256, sliding_window=8, global_layers=(2,))
    assert Architecture.from_dict(good.to_dict()) == good and good.window_of(2) == 0 and good.window_of(1) == 8
    with pytest.raises(ManifestError, match=needle):
        Architecture.from_dict({**good.to_dict(), **change})
