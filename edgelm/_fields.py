"""Reading untrusted JSON records field by field, with the field named in every error.

A manifest, a stored benchmark run or a phone's output is a dict that anyone may have
written. :class:`Fields` wraps one and hands out typed values (``int`` that is not a
bool, finite ``float`` within bounds, ``str`` of bounded length, nested objects), raising
the caller's error type with a dotted path (``model.weights_bytes: must be an integer >=
0, got 'abc'``) instead of a KeyError or TypeError somewhere downstream.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import EdgeLMError

__all__ = ["Fields", "MISSING"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
MAX_STR = 1 << 16


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class Fields:
    """The fields of one JSON object at ``where`` (a dotted path used in errors)."""

    def __init__(self, data: Any, where: str, error: type[EdgeLMError]) -> None:
        self.error = error
        self.where = where
        if not isinstance(data, dict):
            raise error(f"{where}: must be a JSON object, got {type(data).__name__}")
        self.data = data

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, why: str, value: Any = MISSING) -> EdgeLMError:
        got = "" if value is MISSING else f", got {_show(value)}"
        return self.error(f"{self._path(key)}: {why}{got}")

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(f"{self._path(key)}: missing")
        return default

    def has(self, key: str) -> bool:
        return key in self.data

    def integer(self, key: str, *, lo: int | None = None, hi: int | None = None, default: Any = MISSING) -> Any:
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, "must be an integer", v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(key, f"must be an integer in [{lo if lo is not None else '-inf'}, "
                                 f"{hi if hi is not None else 'inf'}]", v)
        return v

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None, positive: bool = False,
              default: Any = MISSING) -> Any:
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, "must be a finite number", v)
        v = float(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi) or (positive and v <= 0):
            bound = "> 0" if positive else f"in [{lo}, {hi}]"
            raise self.fail(key, f"must be a number {bound}", v)
        return v

    def text(self, key: str, *, default: Any = MISSING, choices: tuple[str, ...] | None = None,
            max_len: int = MAX_STR) -> Any:
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, str) or len(v) > max_len:
            raise self.fail(key, f"must be a string of at most {max_len} characters", v)
        if choices is not None and v not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}", v)
        return v

    def flag(self, key: str, *, default: Any = MISSING) -> Any:
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, bool):
            raise self.fail(key, "must be true or false", v)
        return v

    def sub(self, key: str, *, default: Any = MISSING) -> Fields:
        v = self._get(key, default)
        return Fields({} if v is default and default is not MISSING else v, self._path(key), self.error)

    def opt_sub(self, key: str) -> Fields | None:
        v = self.data.get(key)
        return None if v is None else Fields(v, self._path(key), self.error)

    def list(self, key: str, *, default: Any = MISSING, max_len: int = 1 << 20) -> Any:
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return v
        if not isinstance(v, list) or len(v) > max_len:
            raise self.fail(key, f"must be a list of at most {max_len} items", v)
        return v

    def str_map(self, key: str, *, default: Any = MISSING) -> dict[str, str]:
        """An object whose values are all strings (e.g. tool versions)."""
        v = self._get(key, default)
        if v is default and default is not MISSING:
            return dict(v)
        sub = Fields(v, self._path(key), self.error)
        return {k: sub.text(k) for k in sub.data}
