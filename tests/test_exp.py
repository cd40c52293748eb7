"""The libm-free exp that the sampling kernels and the C operators share
(kernels/edgelm_exp.h): its stated error bound, checked against float64, and its four-lane
form giving the scalar form's bits."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from edgelm._kernels._sampling import exp_nonpos

HEADER = Path(__file__).resolve().parents[1] / "kernels" / "edgelm_exp.h"


def _constant(name: str) -> float:
    m = re.search(rf"#define {name} ([0-9.e+-]+)f", HEADER.read_text())
    assert m, f"edgelm_exp.h states no {name}"
    return float(m.group(1))


def _bound(x: np.ndarray) -> np.ndarray:
    """The header's stated bound on the relative error at x."""
    return _constant("EDGELM_EXP_REL_ERROR") + _constant("EDGELM_EXP_REL_ERROR_PER_UNIT") * np.abs(x.astype(np.float64))


def _exp(x: np.ndarray, lanes: bool) -> np.ndarray:
    out = np.empty_like(x)
    exp_nonpos(x, out, lanes)
    return out


def _grid() -> np.ndarray:
    """Every 61st float32 in [-87, 0] by bit pattern (18 million values; the emulated Arm lane
    sets EDGELM_EXP_STRIDE to take fewer), both ends included."""
    stride = int(os.environ.get("EDGELM_EXP_STRIDE", "61"))
    lo = np.array([-87.0], np.float32).view(np.uint32)[0]
    bits = np.arange(np.uint32(0x80000000), lo, stride, dtype=np.uint32)
    return np.concatenate([bits.view(np.float32), np.array([0.0, -87.0], np.float32)])


def test_the_stated_relative_error_bound_holds() -> None:
    x = _grid()
    got = _exp(x, lanes=False).astype(np.float64)
    rel = np.abs(got / np.exp(x.astype(np.float64)) - 1.0)
    share = rel / _bound(x)
    worst = int(share.argmax())
    assert share[worst] <= 1.0, f"relative error {rel[worst]:.3g} at x = {x[worst]!r} is past the bound"
    assert share.max() > 0.6, f"the stated bound is loose: at most {share.max():.2f} of it is reached"


def test_four_lanes_give_the_scalar_bits() -> None:
    x = _grid()[:1_000_003]  # an odd length: the padded tail too
    assert len(x) % 4 != 0
    assert np.array_equal(_exp(x, lanes=True).view(np.uint32), _exp(x, lanes=False).view(np.uint32))


def test_edges() -> None:
    x = np.array([0.0, -0.0, -87.0, -88.0, -1e30, -np.inf, -1.0], np.float32)
    for lanes in (False, True):
        y = _exp(x, lanes)
        assert y[0] == 1.0 and y[1] == 1.0
        assert y[2] == y[3] == y[4] == y[5] > 0  # clamped at -87: the smallest normal scale, never 0
        assert abs(float(y[2]) / np.exp(-87.0) - 1) <= _bound(np.array([87.0]))[0]
        assert abs(float(y[6]) / np.exp(-1.0) - 1) <= _bound(np.array([1.0]))[0]


def test_the_operators_use_the_same_header() -> None:
    shared = (HEADER.parent / "ortops" / "shared_math.h").read_text()
    assert '#include "../edgelm_exp.h"' in shared
    assert "edgelm_exp_nonpos(x)" in shared and "EXP2_POLY" not in shared
