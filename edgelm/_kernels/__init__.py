"""Compiled kernels (built from ``kernels/*.pyx`` by setup.py). Use them through
``edgelm.sampling``, which validates inputs before calling in."""
