"""Chat templates: render messages to a prompt string, safely.

A chat template comes from a model folder, which may have been downloaded from anyone, so
it is untrusted code. It renders in jinja2's ``ImmutableSandboxedEnvironment`` (as
transformers does: no attribute access to Python internals, no mutation of the messages),
with a wall-clock deadline checked on every line the template executes and a cap on the
size of strings and lists it can build, so a template that loops forever or multiplies a
string to gigabytes ends in :class:`~edgelm.errors.RuntimeLoadError`. Without jinja2 the
ChatML layout that SmolLM2, Qwen2 and edgelm's byte-level presets use is rendered
directly, so the device side needs no template engine for them.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import RuntimeLoadError

__all__ = ["load_chat_template", "render_chat", "RENDER_SECONDS", "MAX_RENDER_CHARS", "MAX_TEMPLATE_BYTES"]

#: A template's render must finish within this (a real one takes well under a millisecond).
RENDER_SECONDS = 2.0
#: No string or list a template builds, nor its output, may exceed this many items.
MAX_RENDER_CHARS = 1 << 22
#: A chat template file (or tokenizer_config.json) larger than this is refused unread.
MAX_TEMPLATE_BYTES = 1 << 22


def _read_small(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise RuntimeLoadError(f"{path}: larger than {MAX_TEMPLATE_BYTES >> 20} MiB, not a chat template")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RuntimeLoadError(f"{path}: unreadable ({e})") from e


def load_chat_template(folder: Path) -> str | None:
    """The folder's chat template (``tokenizer_config.json``'s ``chat_template``, else
    ``chat_template.jinja``), or None; a corrupt file is a RuntimeLoadError."""
    cfg = Path(folder) / "tokenizer_config.json"
    if cfg.exists():
        try:
            data = json.loads(_read_small(cfg))
        except (json.JSONDecodeError, RecursionError) as e:
            raise RuntimeLoadError(f"{cfg}: not valid JSON ({e})") from None
        template = data.get("chat_template") if isinstance(data, dict) else None
        if isinstance(template, str):
            return template
        if template is not None and not isinstance(template, list):
            raise RuntimeLoadError(f"{cfg}: chat_template must be a string")
    jinja_file = Path(folder) / "chat_template.jinja"
    return _read_small(jinja_file) if jinja_file.exists() else None


def _chatml(messages: list[dict[str, str]], default_system: str | None) -> str:
    parts = []
    if default_system and messages and messages[0]["role"] != "system":
        parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
    for m in messages:
        parts.append(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


class _TemplateTimeout(Exception):
    pass


@functools.lru_cache(maxsize=1)
def _sandbox() -> Any:
    """The one sandboxed environment (jinja2 is imported only when a template renders)."""
    from jinja2.exceptions import SecurityError, TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > 1024:
                raise SecurityError("exponent too large")
            if operator == "*":
                for seq, times in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                            and len(seq) * times > MAX_RENDER_CHARS:
                        raise SecurityError("the template builds a sequence too large")
            return super().call_binop(context, operator, left, right)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = Sandbox(trim_blocks=False, lstrip_blocks=False)
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> Any:
    """A template compiled once (a chat renders the same one every turn)."""
    return _sandbox().from_string(template)


def _render_with_deadline(render: Any, seconds: float) -> str:
    """``render()`` with a deadline checked on every line of Python it runs (the template's
    compiled code): no thread or signal, so it works off the main thread too."""
    deadline = time.monotonic() + seconds

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > deadline:
            raise _TemplateTimeout
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        return str(render())
    finally:
        sys.settrace(previous)


def render_chat(template: str | None, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                seconds: float = RENDER_SECONDS, tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt ``template`` renders for ``messages``, in a sandbox, within ``seconds``
    (``tools``, OpenAI-style function specs, passed as the template's ``tools`` variable)."""
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RuntimeLoadError("chat messages must be dicts with a string 'role' and 'content'")
    if template is None:
        raise RuntimeLoadError("this model folder has no chat template: pass a plain prompt string")
    try:
        import jinja2
    except ImportError:
        if "<|im_start|>" not in template:
            raise RuntimeLoadError("rendering this chat template needs jinja2 (pip install jinja2)") from None
        marker = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
        return _chatml(messages, marker if marker in template else None)
    try:
        compiled = _compiled(template)
        text = _render_with_deadline(
            lambda: compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    **({"tools": tools} if tools else {})), seconds)
    except _TemplateTimeout:
        raise RuntimeLoadError(f"the chat template did not finish rendering in {seconds:g} s "
                               "(a loop that never ends?)") from None
    except jinja2.exceptions.SecurityError as e:
        raise RuntimeLoadError(f"the chat template tried something unsafe and was stopped ({e})") from None
    except (jinja2.TemplateError, RecursionError, MemoryError, TypeError, ValueError, ArithmeticError,
            AttributeError, KeyError, IndexError) as e:
        raise RuntimeLoadError(f"the chat template failed to render: {type(e).__name__}: {e}") from None
    if len(text) > MAX_RENDER_CHARS:
        raise RuntimeLoadError(f"the chat template rendered more than {MAX_RENDER_CHARS} characters")
    return text
