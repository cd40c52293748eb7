"""Builds the Cython kernels in kernels/ into edgelm._kernels, and edgelm's ONNX Runtime
custom operator (kernels/ortops/, plain C) into edgelm._ortops (metadata is in pyproject.toml).

Bounds checks are off; set EDGELM_KERNEL_DEBUG=1 at build time to turn them (and
wraparound) on when debugging a kernel.
"""

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("EDGELM_KERNEL_DEBUG", "") not in ("", "0")
directives = {
    "language_level": "3",
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": True,
    "initializedcheck": DEBUG,
}
extensions = [
    Extension(
        f"edgelm._kernels.{pyx.stem}",
        [str(pyx)],
        depends=sorted(str(p) for p in [*Path("kernels").glob("*.h"), *Path("kernels").glob("*.pxd")]),
        include_dirs=[np.get_include(), "kernels"],
        # No FP contraction: the same float operations on every machine (x86 and Arm), so a
        # seed draws the same tokens everywhere.
        extra_compile_args=(["-O3"] if not DEBUG else ["-O0", "-g"]) + ["-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for pyx in sorted(Path("kernels").glob("_*.pyx"))
]

# A plain shared library that ONNX Runtime loads by path (register_custom_ops_library); it has
# no Python entry point and is never imported. Its kernels for AVX2 / AVX-512 (arch/x86/) and
# NEON / dotprod (arch/arm/) carry their own target attributes and are chosen at run time
# (kernels.c's table, from isa.c's probe), so one build runs on every CPU of its architecture;
# on other CPUs those files are empty.
ORTOPS = Path("kernels/ortops")
ortops = Extension(
    "edgelm._ortops",
    sorted(str(p) for p in [*ORTOPS.glob("*.c"), *ORTOPS.glob("arch/*/*.c")]),
    depends=sorted(str(p) for p in [*ORTOPS.glob("*.h"), *ORTOPS.glob("arch/*/*.h"), Path("kernels/edgelm_exp.h")]),
    extra_compile_args=(["-O3"] if not DEBUG else ["-O0", "-g"]) + ["-std=c11", "-fvisibility=hidden"],
    libraries=["m"],
)

setup(ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["kernels"]) + [ortops])
