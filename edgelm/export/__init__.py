"""Export: a Hugging Face folder, a GGUF file, a hub id or a preset -> a verified ONNX model folder.

Submodules: ``sources`` (load a source), ``gguf_blocks`` (carry GGUF blocks over
exactly), ``quantize`` (block quantization), ``graph`` (the ONNX decoder), ``verify``
(against PyTorch), ``pipeline`` (the stages and the manifest).
"""

from .pipeline import ExportConfig, ExportResult, export, format_summary

__all__ = ["ExportConfig", "ExportResult", "export", "format_summary"]
