"""edgelm: small language models on phones and edge boards.

Submodules:

* ``edgelm.export``   source model -> quantized, verified ONNX model folder (needs the
  ``export`` extra: torch, transformers, gguf)
* ``edgelm.runtime``  ONNX Runtime decoder with an in-place KV cache (device side)
* ``edgelm.manifest`` the ``edgelm.json`` contract between export and the rest
* ``edgelm.arch``     the supported architecture and its presets
* ``edgelm.cli``      the ``edgelm`` command
* ``edgelm.sampling`` validated sampling parameters over the compiled kernels
* ``edgelm.fuzz``     hostile inputs for the sampling kernels (tests, benchmarks)
"""

from ._version import __version__

__all__ = ["__version__", "load", "SamplingParams"]


def load(folder, threads=None, context=None, *, verify=False, sequences=1):  # type: ignore[no-untyped-def]
    """Load an exported model folder (see :func:`edgelm.runtime.load`); ``verify=True``
    also checks every file's sha256 against the manifest; ``sequences`` is the most samples
    one ``generate(..., n=)`` draws in parallel."""
    from .runtime import load as _load

    return _load(folder, threads=threads, context=context, verify=verify, sequences=sequences)


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "SamplingParams":
        from .sampling import SamplingParams

        return SamplingParams
    raise AttributeError(name)
