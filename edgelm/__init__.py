"""edgelm: small language models on phones and edge boards.

Submodules:

* ``edgelm.export``   source model -> quantized, verified ONNX model folder (needs the
  ``export`` extra: torch, transformers, gguf)
* ``edgelm.runtime``  ONNX Runtime decoder with an in-place KV cache (device side)
* ``edgelm.manifest`` the ``edgelm.json`` contract between export and the rest
* ``edgelm.arch``     the supported architecture and its presets
* ``edgelm.cli``      the ``edgelm`` command
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
