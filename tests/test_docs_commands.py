"""Every command README.md and docs/ show still parses: the docs cannot drift from the CLI.

``edgelm ...`` lines in bash blocks (and after ``$ `` in output blocks) go through the
CLI's own argument parser; in inline code, which names a command or an option in prose,
the subcommand and every ``--flag`` shown must exist. ``python benchmarks/X.py`` and
``bash scripts/X.sh`` must name a script that exists and accepts each ``--flag`` shown.
Python blocks must compile, and links to files must resolve."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from edgelm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`((?:edgelm|python benchmarks/|bash scripts/)[^`]*)`")


def _commands(text: str) -> list[tuple[str, bool]]:
    """(command, whole): ``whole`` for a command line, not for inline code in prose."""
    found = []
    for lang, body in _FENCE.findall(text):
        for line in body.splitlines():
            line = line.strip()
            if lang == "bash" or line.startswith("$ "):
                found.append((line.removeprefix("$ "), True))
    outside = _FENCE.sub("", text)
    found += [(m.group(1).replace("\n", " "), False) for m in _INLINE.finditer(outside)]
    return [(c, w) for c, w in found if c.startswith(("edgelm ", "python benchmarks/", "bash scripts/"))]


def _argv(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    for i, w in enumerate(words):
        if w in (">", "|", "&&", ";", "2>&1"):
            return words[:i]
    return words


def _options(command: str) -> set[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    sub = subparsers.choices.get(command)
    return set() if sub is None else {o for a in sub._actions for o in a.option_strings}


def _problem(command: str, whole: bool = True) -> str | None:
    """Why the command would not run as written (``whole``), or name an option that does not
    exist (inline code), or None."""
    argv = _argv(command)
    if argv[0] == "edgelm" and not whole:
        if len(argv) < 2 or argv[1].startswith("-"):
            return None
        known = _options(argv[1])
        if not known:
            return f"no command edgelm {argv[1]}"
        unknown = [a.split("=")[0] for a in argv[2:] if a.startswith("--") and a.split("=")[0] not in known]
        return f"edgelm {argv[1]} has no option {unknown[0]}" if unknown else None
    if argv[0] == "edgelm":
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                build_parser().parse_args(argv[1:])
        except SystemExit as e:
            if e.code:
                return err.getvalue().strip().splitlines()[-1]
        return None
    script = ROOT / argv[1]
    if not script.is_file():
        return f"{argv[1]} does not exist"
    source = script.read_text()
    missing = [a.split("=")[0] for a in argv[2:] if a.startswith("--") and a != "--" and a.split("=")[0] not in source]
    return f"{argv[1]} has no option {missing[0]}" if missing else None


def _all() -> list[tuple[str, str, bool]]:
    return [(doc.relative_to(ROOT).as_posix(), c, w) for doc in DOCS for c, w in _commands(doc.read_text())]


def test_the_docs_show_commands() -> None:
    docs = {d for d, _, _ in _all()}
    assert "README.md" in docs and len(_all()) >= 30


def test_a_drifted_command_is_caught() -> None:
    assert _problem("edgelm export smollm2-135m -o DIR --quantisation int4") is not None
    assert _problem("edgelm plan --device pixel-8-pro --tokens-per-day many") is not None
    assert _problem("python benchmarks/compare_peers.py --no-such-option") is not None
    assert _problem("bash scripts/nowhere.sh") is not None
    assert _problem("edgelm bench models/m --threads 2 > out.txt  # a comment") is None
    assert _problem("edgelm profile --compare-shapes", whole=False) is None
    assert _problem("edgelm profile --compare-shape", whole=False) is not None
    assert _problem("edgelm profiles", whole=False) is not None


@pytest.mark.parametrize(("doc", "command", "whole"), _all())
def test_command_parses(doc: str, command: str, whole: bool) -> None:
    assert _problem(command, whole) is None, f"{doc}: {command}: {_problem(command, whole)}"


@pytest.mark.parametrize("doc", [d.relative_to(ROOT).as_posix() for d in DOCS])
def test_python_blocks_compile(doc: str) -> None:
    for lang, body in _FENCE.findall((ROOT / doc).read_text()):
        if lang == "python":
            compile(body, doc, "exec")


@pytest.mark.parametrize("doc", [d.relative_to(ROOT).as_posix() for d in DOCS])
def test_links_to_files_exist(doc: str) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target).exists(), f"{doc} links to {target}, which does not exist"
