"""Benchmarks on the device: timed runs (``runner``), energy meters (``meters``), the
append-only results store (``store``)."""

from .runner import bench, format_bench
from .store import ResultsStore, StoreError

__all__ = ["ResultsStore", "StoreError", "bench", "format_bench"]
