"""Constrained decoding: a JSON schema, a Lark or GBNF grammar or a regular expression,
compiled by llguidance into a matcher that writes each step's allowed tokens into a bitset
the sampling kernel applies before everything else (``Sampler.constrain``).

Why llguidance (benchmarks/structured.py measures the three engines the design note
names, on SmolLM2's 49,152 tokens): it computes a step's mask in tens of microseconds
from the tokenizer's own tokens.json, without transformers or torch (the device side's
dependencies), takes JSON schemas, Lark, GBNF and regexes, and ONNX Runtime GenAI uses it.

A constraint arrives from a user (``response_format``, ``grammar=``, a CLI file): it is
parsed once into a :class:`Constraint` and compiled into a :class:`Grammar`, and either
step's failure is one GrammarError naming what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgeLMError

__all__ = ["Constraint", "Grammar", "GrammarError", "Matcher", "TokenizerGrammars", "KINDS"]

#: What a constraint may be written in.
KINDS = ("json_schema", "lark", "gbnf", "regex")
MAX_SOURCE = 1 << 20  # characters of a schema or grammar
#: The whitespace a JSON schema allows between tokens: none, a space, or a new line and up
#: to 20 spaces or tabs of indent (llama.cpp's json-schema-to-grammar rule). Unbounded
#: whitespace lets a small model loop on it until the token budget ends the JSON unclosed.
#: A schema's own "x-guidance" options override it.
JSON_SPACE = r"( |\n[ \t]{0,20})?"


class GrammarError(EdgeLMError):
    """A schema or grammar that cannot be used (does not parse, does not compile)."""


def _engine() -> Any:
    try:
        import llguidance
    except ImportError as e:
        raise GrammarError("constrained decoding needs llguidance: pip install llguidance") from e
    return llguidance


@dataclass(frozen=True)
class Constraint:
    """What the output must match: ``kind`` (one of KINDS) and its ``source`` text (a JSON
    schema is kept as its JSON text)."""

    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise GrammarError(f"a constraint is one of {', '.join(KINDS)}, got {self.kind!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise GrammarError(f"the {self.kind} is empty")
        if len(self.source) > MAX_SOURCE:
            raise GrammarError(f"the {self.kind} is longer than {MAX_SOURCE} characters")

    @classmethod
    def from_response_format(cls, response_format: Any) -> Constraint:
        """OpenAI's ``response_format``: ``{"type": "json_schema", "schema": {...}}`` (or
        ``"json_schema": {"schema": {...}}``, as OpenAI nests it), or ``{"type":
        "json_object"}`` for any JSON object."""
        if not isinstance(response_format, dict) or "type" not in response_format:
            raise GrammarError('response_format must be a dict with a "type" ("json_schema" or "json_object")')
        kind = response_format["type"]
        if kind == "json_object":
            return cls("json_schema", json.dumps({"type": "object"}))
        if kind != "json_schema":
            raise GrammarError(f'response_format type must be "json_schema" or "json_object", got {kind!r}')
        schema = response_format.get("schema")
        nested = response_format.get("json_schema")
        if schema is None and isinstance(nested, dict):
            schema = nested.get("schema")
        if not isinstance(schema, (dict, bool)):
            raise GrammarError('response_format needs a "schema": a JSON schema object')
        return cls.json_schema(schema)

    @classmethod
    def json_schema(cls, schema: Any) -> Constraint:
        try:
            text = json.dumps(schema)
        except (TypeError, ValueError) as e:
            raise GrammarError(f"the JSON schema is not JSON: {e}") from None
        return cls("json_schema", text)

    @classmethod
    def from_file(cls, path: str | Path, kind: str) -> Constraint:
        """A schema or grammar file (for the CLI); the kind from its flag, a JSON schema
        checked to be JSON, a grammar file ending .gbnf read as GBNF."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise GrammarError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        if kind == "json_schema":
            try:
                return cls.json_schema(json.loads(text))
            except json.JSONDecodeError as e:
                raise GrammarError(f"{path}: not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
        if kind == "grammar":
            kind = "gbnf" if path.suffix == ".gbnf" or "::=" in text else "lark"
        return cls(kind, text)


class Grammar:
    """A constraint compiled for one tokenizer: validated once, then matchers are cheap."""

    def __init__(self, constraint: Constraint, tokenizer: Any) -> None:
        ll = _engine()
        c = constraint
        try:
            if c.kind == "json_schema":
                text = ll.LLMatcher.grammar_from_json_schema(c.source, defaults={"whitespace_pattern": JSON_SPACE})
            elif c.kind == "regex":
                text = ll.LLMatcher.grammar_from_regex(c.source)
            elif c.kind == "gbnf":
                from llguidance.gbnf_to_lark import gbnf_to_lark

                text = ll.LLMatcher.grammar_from_lark(gbnf_to_lark(c.source))
            else:
                text = ll.LLMatcher.grammar_from_lark(c.source)
        except Exception as e:  # noqa: BLE001  (llguidance raises ValueError/RuntimeError with its reason)
            raise GrammarError(f"the {c.kind} does not compile: {_first_line(e)}") from None
        is_error, messages = ll.LLMatcher.validate_grammar_with_warnings(text, tokenizer)
        if is_error:
            raise GrammarError(f"the {c.kind} does not compile: {_first_line(messages[0] if messages else '')}")
        self.constraint, self.text, self.tokenizer = c, text, tokenizer

    def matcher(self) -> Matcher:
        return Matcher(self)


def _first_line(e: Any) -> str:
    """The engine's message on one line (a regex error spans several)."""
    text = " ".join(x.strip() for x in str(e).splitlines() if x.strip())
    return (text or type(e).__name__)[:300]


class Matcher:
    """One generation's position in a grammar: :meth:`fill` writes the allowed tokens into
    :attr:`mask` (allocated once: the sampler reads it in place), :meth:`consume` advances
    by the sampled token."""

    def __init__(self, grammar: Grammar) -> None:
        ll = _engine()
        self._m = ll.LLMatcher(grammar.tokenizer, grammar.text, log_level=0)
        if self._m.is_error():
            raise GrammarError(f"the {grammar.constraint.kind} does not compile: {_first_line(self._m.get_error())}")
        vocab = grammar.tokenizer.vocab_size
        self.mask = np.zeros((vocab + 31) // 32, np.int32)
        self._nbytes = self.mask.nbytes
        self.kind = grammar.constraint.kind

    def fill(self) -> np.ndarray:
        """The allowed tokens of the next step, into :attr:`mask` (and returned)."""
        self._m.unsafe_compute_mask_ptr(self.mask.ctypes.data, self._nbytes)
        if self._m.is_error():
            raise GrammarError(f"the {self.kind} failed: {_first_line(self._m.get_error())}")
        return self.mask

    def consume(self, token: int) -> None:
        if not self._m.consume_token(int(token)):
            raise GrammarError(f"token {token} does not fit the {self.kind}: {_first_line(self._m.get_error())}")

    @property
    def done(self) -> bool:
        """The grammar is complete and allows nothing more (the end token was consumed, or
        no token could extend it)."""
        return bool(self._m.is_stopped())

    @property
    def accepting(self) -> bool:
        return bool(self._m.is_accepting())


class TokenizerGrammars:
    """The llguidance tokenizer of one model folder (built once, ~1 s for 49,152 tokens)
    and its compiled grammars, by constraint."""

    def __init__(self, tokenizer_json: Path, vocab_size: int, eos_ids: frozenset[int]) -> None:
        self._path, self._vocab, self._eos = tokenizer_json, vocab_size, sorted(eos_ids)
        self._tok: Any = None
        self._cache: dict[Constraint, Grammar] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tok is None:
            ll = _engine()
            text = self._path.read_text(encoding="utf-8")
            try:
                try:
                    self._tok = ll.LLTokenizer(text, n_vocab=self._vocab, eos_token=self._eos or None)
                except TypeError:  # llguidance before 1.7 (the newest aarch64 manylinux2014 wheel) takes one id
                    self._tok = ll.LLTokenizer(text, n_vocab=self._vocab,
                                               eos_token=self._eos[0] if self._eos else None)
            except Exception as e:  # noqa: BLE001  (a tokenizer.json llguidance cannot read)
                raise GrammarError(f"{self._path}: llguidance cannot read this tokenizer: {_first_line(e)}") from None
        return self._tok

    def compile(self, constraint: Constraint) -> Grammar:
        if constraint not in self._cache:
            if len(self._cache) > 32:
                self._cache.clear()
            self._cache[constraint] = Grammar(constraint, self.tokenizer)
        return self._cache[constraint]
