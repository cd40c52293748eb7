"""Chat templates are untrusted code from a model folder: they render sandboxed, within a
deadline, and every failure is a RuntimeLoadError with one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgelm.errors import RuntimeLoadError
from edgelm.runtime.chat import load_chat_template, render_chat

MSGS = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("template, match", [
    ("{{ cycler.__init__.__globals__.os.system('touch {marker}') }}", "unsafe"),
    ("{{ ().__class__.__base__.__subclasses__() }}", "unsafe"),
    ("{{ messages.append(1) }}", "unsafe"),
    ("{{ 'a' * 1000000000 }}", "too large"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
    ("{% for", "TemplateSyntaxError"),
    ("{{ raise_exception('bad role') }}", "bad role"),
])
def test_hostile_template_is_stopped(tmp_path: Path, template: str, match: str) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(RuntimeLoadError, match=match) as e:
        render_chat(template.replace("{marker}", str(marker)), MSGS)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_template_that_never_ends_is_stopped_at_the_deadline() -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeLoadError, match="did not finish"):
        render_chat("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", MSGS,
                    seconds=0.5)
    assert time.monotonic() - t0 < 5


def test_a_real_chatml_template_renders_as_before() -> None:
    t = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}{{ messages | tojson }}")
    out = render_chat(t, MSGS)
    assert out.startswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert out.endswith(json.dumps(MSGS))


@pytest.mark.parametrize("content", ["{not json", json.dumps({"chat_template": 5}), "[" * 100000])
def test_broken_tokenizer_config_is_one_line(tmp_path: Path, content: str) -> None:
    (tmp_path / "tokenizer_config.json").write_text(content)
    with pytest.raises(RuntimeLoadError, match="tokenizer_config.json"):
        load_chat_template(tmp_path)


def test_messages_must_be_strings() -> None:
    with pytest.raises(RuntimeLoadError, match="string"):
        render_chat("{{ messages }}", [{"role": "user", "content": 5}])
