"""edgelm's ONNX Runtime custom operator library (``BlockQuantMatMul``, domain ``ai.edgelm``).

Built from ``kernels/ortops/qmatmul.c`` into the package as ``edgelm._ortops``: a plain
shared library that ONNX Runtime loads by path. Every session edgelm opens registers it,
so a model folder exported with ``--kernel edgelm`` (the default) runs anywhere edgelm is
installed; a folder that needs it on a machine where it was not built fails with one line.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import RuntimeLoadError

__all__ = ["DOMAIN", "OP_TYPE", "library_path", "register", "isa_levels", "active_isa"]

DOMAIN = "ai.edgelm"
OP_TYPE = "BlockQuantMatMul"


def library_path() -> str | None:
    """Path of the compiled operator library, or None when this install has none."""
    spec = importlib.util.find_spec("edgelm._ortops")
    return spec.origin if spec is not None and spec.origin else None


def isa_levels() -> list[str]:
    """The instruction-set levels the library has kernels for on this architecture, lowest
    first (``EDGELM_ORTOPS_ISA`` takes one of them as a cap)."""
    import platform

    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        return ["portable", "avx2", "avx512"]
    if machine in ("aarch64", "arm64"):
        return ["portable", "neon", "dotprod", "i8mm"]
    return ["portable"]


def active_isa() -> str | None:
    """The level the library runs at in this process (the CPU's best, capped by
    ``EDGELM_ORTOPS_ISA``), or None without the library."""
    import ctypes

    path = library_path()
    if path is None:
        return None
    fn = ctypes.CDLL(path).edgelm_ortops_isa
    fn.restype = ctypes.c_char_p
    return str(fn().decode())


def register(session_options: Any, required: bool = False) -> bool:
    """Register the operators with an ``onnxruntime.SessionOptions``; returns whether it did.
    With ``required``, a missing library is a :class:`RuntimeLoadError`."""
    path = library_path()
    if path is None:
        if required:
            raise RuntimeLoadError("this model needs edgelm's compiled operator library (edgelm._ortops), which "
                                   "this install lacks: reinstall edgelm with a C compiler (pip install .)")
        return False
    session_options.register_custom_ops_library(path)
    return True
