"""Benchmarks on the device: timed runs (``runner``), energy meters (``meters``), one run
as a validated record (``record``), the append-only results store (``store``)."""

from .record import BenchRecord, RecordError
from .runner import bench, format_bench
from .store import ResultsStore, StoreError

__all__ = ["BenchRecord", "RecordError", "ResultsStore", "StoreError", "bench", "format_bench"]
