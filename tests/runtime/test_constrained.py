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
def tiny_int4(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export (the mask does not depend on the graph: the sampler applies it)."""
    pytest.importorskip("torch")
    from edgelm.export import ExportConfig, export

    out = tmp_path_factory.mktemp("constrained") / "int4"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


@pytest.fixture
def tiny(tiny_int4: Path) -> edgelm.Model:
    return edgelm.load(tiny_int4, threads=2, context=256, sequences=3)


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
