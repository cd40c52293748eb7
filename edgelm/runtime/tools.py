"""Tool calls: OpenAI-style function specs rendered into the prompt in the model's own way,
the call constrained to one of the tools and its parameters' schema, and parsed back.

A template that takes ``tools`` (Qwen 2.5/3, Llama 3.x, ...) renders them itself; one that
does not (SmolLM2's) gets a system message listing them as JSON schemas and asking for one
call as JSON. A template whose tool calls are wrapped in ``<tool_call>`` tags (Qwen's
format) gets the wrapper in the grammar too; any other gets the bare JSON object
``{"name": ..., "arguments": {...}}``. Either way every token of the call is masked by the
grammar, so the reply parses, names a tool it was given and has arguments valid against
that tool's schema (within what llguidance's JSON schema support enforces).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..grammar import JSON_SPACE, Constraint, GrammarError

__all__ = ["Tool", "ToolCall", "parse_tools", "tool_constraint", "tool_messages", "parse_call"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_TOOLS = 128


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


def parse_tools(tools: Any) -> list[Tool]:
    """OpenAI's ``tools`` list (``{"type": "function", "function": {...}}``, or the inner
    function dicts), checked: names unique identifiers, parameters a JSON schema object."""
    if not isinstance(tools, list) or not tools or len(tools) > MAX_TOOLS:
        raise GrammarError(f"tools must be a list of 1 to {MAX_TOOLS} function specs")
    out: list[Tool] = []
    for i, t in enumerate(tools):
        f = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(f, dict):
            raise GrammarError(f"tools[{i}] must be a dict (OpenAI's function spec)")
        name, desc, params = f.get("name"), f.get("description", ""), f.get("parameters", {"type": "object"})
        if not isinstance(name, str) or not _NAME.match(name):
            raise GrammarError(f"tools[{i}].name must be an identifier of at most 64 characters, got {name!r}")
        if not isinstance(desc, str):
            raise GrammarError(f"tools[{i}].description must be a string")
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise GrammarError(f"tools[{i}].parameters must be a JSON schema of type object")
        if any(x.name == name for x in out):
            raise GrammarError(f"tools[{i}]: a second tool named {name!r}")
        out.append(Tool(name, desc, params))
    return out


def takes_tools(template: str | None) -> bool:
    return template is not None and re.search(r"\btools\b", template) is not None


def tool_messages(messages: list[dict[str, Any]], tools: list[Tool], template: str | None) -> list[dict[str, Any]]:
    """The messages to render: as they are when the template renders ``tools`` itself, else
    with a system message (first, or merged into the caller's) that lists them."""
    if takes_tools(template):
        return messages
    listing = "\n".join(json.dumps(t.to_openai()["function"]) for t in tools)
    text = ("You can call one of these tools. Reply with only a JSON object "
            '{"name": <tool name>, "arguments": <its arguments>}.\nTools:\n' + listing)
    if messages and messages[0].get("role") == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _call_schema(tools: list[Tool]) -> dict[str, Any]:
    options = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_constraint(tools: list[Tool], template: str | None) -> Constraint:
    schema = _call_schema(tools)
    if template is not None and "<tool_call>" in template:  # Qwen's format: the call inside its tags
        # %json takes llguidance's options in the schema itself: the same bounded whitespace.
        inline = json.dumps({**schema, "x-guidance": {"whitespace_pattern": JSON_SPACE}})
        return Constraint("lark", f'start: "<tool_call>\\n" call "\\n</tool_call>"\ncall: %json {inline}')
    return Constraint("json_schema", json.dumps(schema))


def parse_call(text: str) -> ToolCall:
    """The call in a reply the tool grammar constrained (tags stripped)."""
    body = text.strip()
    if body.startswith("<tool_call>"):
        body = body.removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
    try:
        d = json.loads(body)
    except json.JSONDecodeError as e:
        raise GrammarError(f"the reply is not a complete tool call (cut by max_new_tokens?): {e.msg}") from None
    return ToolCall(str(d["name"]), dict(d["arguments"]))
