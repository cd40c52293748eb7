"""The device side: ONNX Runtime decoder with an in-place KV cache, generation, chat templates."""

from .model import DEFAULT_CONTEXT, Model, load
from .session import DecoderSession

__all__ = ["DEFAULT_CONTEXT", "DecoderSession", "Model", "load"]
