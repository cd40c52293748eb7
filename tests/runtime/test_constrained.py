"""Constrained generation end to end: JSON schemas, Lark, GBNF and regexes through
``generate`` and the CLI, greedy, sampled and in parallel, on a tiny random model (whose
free output is noise, so only the constraint can make it valid) and on SmolLM2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("llguidance")

import edgelm  # noqa: E402
from edgelm.cli import main  # noqa: E402
from edgelm.errors import RuntimeLoadError  # noqa: E402
from edgelm.grammar import Constraint, GrammarError  # noqa: E402

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99},
                                           "tag": {"enum": ["red", "green", "blue"]}},
          "required": ["ok", "n", "tag"], "additionalProperties": False}


def _valid(text: str) -> bool:
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        return False
    return (set(d) == {"ok", "n", "tag"} and isinstance(d["ok"], bool) and isinstance(d["n"], int)
            and 0 <= d["n"] <= 99 and d["tag"] in ("red", "green", "blue"))


@pytest.fixture(scope="module")
def tiny_int4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export of the tied tiny Llama with a 1,024-token context (a prompt listing tools
    in byte-level tokens is long); the mask does not depend on the graph."""
    pytest.importorskip("torch")
    from dataclasses import replace

    from edgelm.export import ExportConfig, export

    from ..conftest import TINY_VARIANTS, build_tiny_hf_folder

    root = tmp_path_factory.mktemp("constrained")
    hf = build_tiny_hf_folder(root / "hf", replace(TINY_VARIANTS["llama-tied"], max_context=1024))
    export(str(hf), root / "int4", ExportConfig(quant="int4", verify=False, progress=False))
    return root / "int4"


@pytest.fixture
def tiny(tiny_int4: Path) -> edgelm.Model:
    return edgelm.load(tiny_int4, threads=2, context=1024, sequences=3)


@pytest.mark.parametrize("sampling", [None, edgelm.SamplingParams(temperature=1.5, top_k=50, seed=3),
                                      edgelm.SamplingParams(temperature=1.0, top_p=0.9, repetition_penalty=1.3,
                                                            seed=8)])
def test_a_random_model_writes_valid_json_under_a_schema(tiny: edgelm.Model, sampling: object) -> None:
    fmt = {"type": "json_schema", "schema": SCHEMA}
    free = tiny.generate("the edge device", max_new_tokens=200, sampling=sampling)
    assert not _valid(free)  # noise without the constraint...
    out = tiny.generate("the edge device", max_new_tokens=200, sampling=sampling, response_format=fmt)
    assert _valid(out), out  # ...valid with it, and ended where the JSON ends
    streamed = "".join(tiny.generate("the edge device", max_new_tokens=200, sampling=sampling,
                                     response_format=fmt, stream=True))
    assert streamed == out


def test_parallel_samples_each_follow_the_schema(tiny: edgelm.Model) -> None:
    params = edgelm.SamplingParams(temperature=2.0, top_k=100, seed=11)
    samples = tiny.generate("hello", max_new_tokens=200, sampling=params, n=3,
                            response_format={"type": "json_schema", "schema": SCHEMA})
    assert all(_valid(s) for s in samples), samples
    for i, text in enumerate(samples):  # each is the lone constrained run with its seed
        lone = tiny.generate("hello", max_new_tokens=200, response_format={"type": "json_schema", "schema": SCHEMA},
                             sampling=edgelm.SamplingParams(**{**params.__dict__, "seed": 11 + i}))
        assert text == lone


@pytest.mark.parametrize("grammar, pattern", [
    (Constraint("regex", r"[0-9]{3}-[0-9]{4}"), r"[0-9]{3}-[0-9]{4}"),
    ('start: "yes" | "no"', r"yes|no"),  # Lark
    ('root ::= ("a" | "b"){1,5} "."', r"[ab]{1,5}\."),  # GBNF, as llama.cpp writes it
])
def test_grammars_and_regexes(tiny: edgelm.Model, grammar: object, pattern: str) -> None:
    for sampling in (None, edgelm.SamplingParams(temperature=1.2, seed=5)):
        out = tiny.generate("x", max_new_tokens=60, sampling=sampling, grammar=grammar)
        assert re.fullmatch(pattern, out), out


@pytest.mark.parametrize("kwargs, message", [
    ({"response_format": {"type": "json_schema", "schema": {"type": "nonsense"}}}, "does not compile"),
    ({"response_format": {"type": "text"}}, 'must be "json_schema" or "json_object"'),
    ({"response_format": "json"}, "must be a dict"),
    ({"grammar": "start: ("}, "lark does not compile"),
    ({"grammar": 42}, "grammar must be"),
    ({"grammar": "start: \"a\"", "response_format": {"type": "json_object"}}, "not both"),
    ({"grammar": "start: \"a\"", "lookup": True}, "lookup cannot be combined"),
])
def test_bad_constraints_are_one_line_errors(tiny: edgelm.Model, kwargs: dict, message: str) -> None:
    with pytest.raises((GrammarError, RuntimeLoadError), match=message):
        tiny.generate("x", max_new_tokens=5, **kwargs)


def test_cli_flags_and_their_errors(tiny_int4: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    assert main(["generate", str(tiny_int4), "-p", "hi", "--raw", "--json-schema", str(schema),
                 "--max-new-tokens", "120"]) == 0
    assert _valid(capsys.readouterr().out.strip())
    assert main(["generate", str(tiny_int4), "-p", "hi", "--raw", "--regex", "[a-c]{5}"]) == 0
    assert re.fullmatch("[a-c]{5}", capsys.readouterr().out.strip())
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "g.gbnf").write_text("root ::= (")
    for flags, needle in ((["--json-schema", str(tmp_path / "bad.json")], "not JSON"),
                          (["--json-schema", str(tmp_path / "missing.json")], "cannot read"),
                          (["--grammar", str(tmp_path / "g.gbnf")], "gbnf does not compile"),
                          (["--regex", "([a-"], "regex does not compile")):
        assert main(["generate", str(tiny_int4), "-p", "hi", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err


@pytest.mark.slow
def test_smollm2_extracts_a_person_as_json(smollm2_folders: dict[str, Path]) -> None:
    """The README's example, its real output."""
    model = edgelm.load(smollm2_folders["int4"], threads=2)
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "age": {"type": "integer", "minimum": 0, "maximum": 150},
                                               "city": {"type": "string"}},
              "required": ["name", "age", "city"], "additionalProperties": False}
    msgs = [{"role": "user", "content": "Extract the person as JSON: Maria Lopez is 34 and lives in Seville."}]
    out = model.generate(msgs, max_new_tokens=80, response_format={"type": "json_schema", "schema": schema})
    assert out == '{\n  "name": "Maria Lopez",\n  "age": 34,\n  "city": "Seville"\n}'
    free = model.generate(msgs, max_new_tokens=80)
    with pytest.raises(json.JSONDecodeError):  # the README's claim: cut mid-way without the schema
        json.loads(free)


TOOLS = [{"type": "function", "function": {"name": "lamp", "description": "Switch the lamp",
                                           "parameters": {"type": "object", "properties": {"on": {"type": "boolean"}},
                                                          "required": ["on"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "volume", "description": "Set the volume",
                                           "parameters": {"type": "object",
                                                          "properties": {"level": {"type": "integer", "minimum": 0,
                                                                                   "maximum": 10}},
                                                          "required": ["level"], "additionalProperties": False}}}]
#: A Qwen-style template: it renders ``tools`` itself and wraps calls in <tool_call> tags.
QWEN_LIKE = ("{% if tools %}<|im_start|>system\n<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}"
             "</tools> Answer with <tool_call> tags.<|im_end|>\n{% endif %}"
             "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
             "<|im_start|>assistant\n")


def _valid_call(call: object) -> bool:
    args = call.arguments  # type: ignore[attr-defined]
    if call.name == "lamp":  # type: ignore[attr-defined]
        return set(args) == {"on"} and isinstance(args["on"], bool)
    return call.name == "volume" and set(args) == {"level"} and 0 <= args["level"] <= 10  # type: ignore[attr-defined]


@pytest.mark.parametrize("template", ["plain", "qwen-like"])
def test_tool_calls_name_a_tool_with_valid_arguments(tiny: edgelm.Model, template: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A random model: the grammar alone makes the call one of the tools, its arguments
    valid, in the template's format (bare JSON, or inside <tool_call> tags)."""
    from edgelm.runtime import tools as tools_mod

    if template == "qwen-like":
        tiny.chat_template = QWEN_LIKE
    seen = []
    real = tools_mod.parse_call
    monkeypatch.setattr(tools_mod, "parse_call", lambda text: (seen.append(text), real(text))[1])
    msgs = [{"role": "user", "content": "turn it up"}]
    for sampling in (None, edgelm.SamplingParams(temperature=1.5, seed=2)):
        call = tiny.tool_call(msgs, TOOLS, max_new_tokens=200, sampling=sampling)
        assert _valid_call(call), call
    assert all(t.startswith("<tool_call>\n") == (template == "qwen-like") for t in seen), seen
    prompt = tiny.tokenizer.decode(tiny.encode(tools_mod.tool_messages(msgs, tools_mod.parse_tools(TOOLS),
                                                                       tiny.chat_template), tools=TOOLS))
    assert "lamp" in prompt and "volume" in prompt  # listed by the template or by the system message


@pytest.mark.parametrize("tools, message", [
    ([], "list of 1 to"),
    ([{"name": "1x"}], "must be an identifier"),
    ([{"name": "a", "parameters": {"type": "string"}}], "of type object"),
    ([{"name": "a"}, {"name": "a"}], "a second tool named"),
])
def test_bad_tool_specs_are_one_line_errors(tiny: edgelm.Model, tools: list, message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        tiny.tool_call([{"role": "user", "content": "x"}], tools)


@pytest.mark.slow
def test_smollm2_calls_the_weather_tool(smollm2_folders: dict[str, Path]) -> None:
    model = edgelm.load(smollm2_folders["int4"], threads=2)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather forecast for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                       "day": {"enum": ["today", "tomorrow"]}},
                       "required": ["city", "day"], "additionalProperties": False}}},
        {"type": "function", "function": {
            "name": "send_email", "description": "Send an email",
            "parameters": {"type": "object", "properties": {"to": {"type": "string", "maxLength": 60},
                                                           "body": {"type": "string", "maxLength": 200}},
                           "required": ["to", "body"], "additionalProperties": False}}}]
    call = model.tool_call([{"role": "user", "content": "What is the weather in Oslo tomorrow?"}], tools)
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo", "day": "tomorrow"})
