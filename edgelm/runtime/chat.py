"""Chat templates: render messages to a prompt string.

Uses jinja2 when installed (the templates are Jinja, as in transformers). Without it,
the ChatML layout that SmolLM2, Qwen2 and edgelm's byte-level presets use is rendered
directly, so the device side needs no template engine for them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import RuntimeLoadError

__all__ = ["load_chat_template", "render_chat"]


def load_chat_template(folder: Path) -> str | None:
    cfg = Path(folder) / "tokenizer_config.json"
    if cfg.exists():
        template = json.loads(cfg.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    jinja_file = Path(folder) / "chat_template.jinja"
    return jinja_file.read_text(encoding="utf-8") if jinja_file.exists() else None


def _chatml(messages: list[dict[str, str]], default_system: str | None) -> str:
    parts = []
    if default_system and messages and messages[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
    for m in messages:
        parts.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def render_chat(template: str | None, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RuntimeLoadError("chat messages must be dicts with 'role' and 'content'")
    if template is None:
        raise RuntimeLoadError("this model folder has no chat template: pass a plain prompt string")
    try:
        import jinja2
    except ImportError:
        if "<|im_start|>" not in template:
            raise RuntimeLoadError("rendering this chat template needs jinja2 (pip install jinja2)") from None
        marker = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
        return _chatml(messages, marker if marker in template else None)
    env = jinja2.Environment(trim_blocks=False, lstrip_blocks=False)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt)
