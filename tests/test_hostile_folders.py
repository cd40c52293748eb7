"""Hostile model folders, derived from one tiny int4 export: template code, path escapes,
operator attributes and tensors that disagree, altered files, manifest fields that disagree
with the graph. Each must end ``edgelm generate`` (or ``verify``) with exit status 2 and
one line on stderr: no signal, no traceback, and no side effect (the marker file a
template would create stays absent).

Derivations that change the graph also rewrite the manifest's sizes and hashes, as an
attacker would: the operators' own checks are what must stop them then.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from edgelm.export import ExportConfig, export  # noqa: E402
from edgelm.runtime import ortops  # noqa: E402

MARKER = "PWNED"


@pytest.fixture(scope="module")
def base(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "base"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int4", verify=False, progress=False))
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "edgelm.json").read_text())


def _write_manifest(folder: Path, m: dict) -> None:
    (folder / "edgelm.json").write_text(json.dumps(m))


def _refresh_files(folder: Path) -> None:
    """Rewrite the manifest's file sizes and hashes to match the folder (what a forger does)."""
    m = _manifest(folder)
    for entry in m["files"]:
        data = (folder / entry["name"]).read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    _write_manifest(folder, m)


def _edit_manifest(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        m = _manifest(folder)
        fn(m)
        _write_manifest(folder, m)
    return apply


def _template(code: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        cfg["chat_template"] = code.replace("{marker}", str(folder / MARKER))
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
        _refresh_files(folder)
    return apply


def _graph(fn: Callable[[onnx.ModelProto], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        model = onnx.load(str(folder / "model.onnx"))  # external data loaded too
        fn(model)
        (folder / "model.onnx").unlink()
        (folder / "model.onnx.data").unlink()
        onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=1024)
        _refresh_files(folder)
    return apply


def _first(model: onnx.ModelProto, op: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == op)


def _set_attr(op: str, name: str, value: int) -> Callable[[onnx.ModelProto], None]:
    def fn(model: onnx.ModelProto) -> None:
        node = _first(model, op)
        for a in node.attribute:
            if a.name == name:
                a.i = value
    return fn


def _shrink_input(op: str, index: int, keep: Callable[[object], object]) -> Callable[[onnx.ModelProto], None]:
    def fn(model: onnx.ModelProto) -> None:
        name = _first(model, op).input[index]
        for i, init in enumerate(model.graph.initializer):
            if init.name == name:
                arr = numpy_helper.to_array(init)
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(keep(arr).copy(), name))
                return
        raise AssertionError(f"no initializer {name}")
    return fn


def _flip_data_byte(folder: Path) -> None:
    path = folder / "model.onnx.data"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _nest(folder: Path) -> None:
    (folder / "edgelm.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)


def _symlink_model_out(folder: Path) -> None:
    outside = folder.parent / f"{folder.name}-outside.onnx"
    shutil.copy(folder / "model.onnx", outside)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(outside)


def _set(path: str, value: object) -> Callable[[dict], None]:
    keys = path.split(".")

    def fn(m: dict) -> None:
        d = m
        for k in keys[:-1]:
            d = d[k]
        if value is _DELETE:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return fn


_DELETE = object()

BQMM, ATTN = ortops.OP_TYPE, "Attention"

#: name -> (how to derive the folder, the word the one-line error must contain)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "template runs os.system": (_template("{{ cycler.__init__.__globals__.os.system('touch {marker}') }}"), "unsafe"),
    "template never ends": (_template("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                                      "{% endfor %}"), "did not finish"),
    "template syntax error": (_template("{% for"), "template"),
    "model_file ../": (_edit_manifest(_set("io.model_file", "../base/model.onnx")), "io.model_file"),
    "model_file absolute": (_edit_manifest(_set("io.model_file", "/etc/passwd")), "io.model_file"),
    "model.onnx links outside": (_symlink_model_out, "outside the model folder"),
    "file name escapes": (_edit_manifest(lambda m: m["files"][0].update(name="../x")), "files[0].name"),
    "same-size data altered": (_flip_data_byte, "sha256"),
    "num_layers": (_edit_manifest(_set("architecture.num_layers", 5)), "num_layers"),
    "head_dim": (_edit_manifest(_set("architecture.head_dim", 32)), "head_dim"),
    "num_kv_heads": (_edit_manifest(_set("architecture.num_kv_heads", 4)), "num_kv_heads"),
    "vocab_size": (_edit_manifest(_set("architecture.vocab_size", 999)), "vocab"),
    "eos of the wrong type": (_edit_manifest(_set("generation.eos_token_id", "two")), "eos_token_id"),
    "eos past the vocabulary": (_edit_manifest(_set("generation.eos_token_id", [10**9])), "eos_token_id"),
    "max_context 10^12": (_edit_manifest(_set("architecture.max_context", 10**12)), "max_context"),
    "nesting 100,000 deep": (_nest, "nested"),
    "weights_bytes.total missing": (_edit_manifest(_set("weights_bytes.total", _DELETE)), "weights_bytes.total"),
    "kv_dtype int8": (_edit_manifest(_set("io.kv_dtype", "int8")), "io.kv_dtype"),
    "kv_dtype float32 for a float16 graph": (_edit_manifest(_set("io.kv_dtype", "float32")), "kv_dtype"),
    "operator domain unknown": (_edit_manifest(_set("io.operator_domains", ["ai.evil"])), "io.operator_domains"),
    "operator domains missing": (_edit_manifest(_set("io.operator_domains", _DELETE)), "io.operator_domains"),
    "seqlens_k renamed": (_edit_manifest(_set("io.seqlens_k", "nope")), "nope"),
    "logits_rows renamed": (_edit_manifest(_set("io.logits_rows", "nope")), "nope"),
    "logits_rows missing": (_edit_manifest(_set("io.logits_rows", _DELETE)), "io.logits_rows"),
    "manifest is a list": (lambda f: (f / "edgelm.json").write_text("[1]"), "JSON object"),
    "tokenizer.json corrupt": (lambda f: ((f / "tokenizer.json").write_text("{"), _refresh_files(f)), "tokenizer"),
    "BlockQuantMatMul N 10^7": (_graph(_set_attr(BQMM, "N", 10**7)), "BlockQuantMatMul"),
    "BlockQuantMatMul bits 4->8": (_graph(_set_attr(BQMM, "bits", 8)), "BlockQuantMatMul"),
    "BlockQuantMatMul K wrong": (_graph(_set_attr(BQMM, "K", 32)), "BlockQuantMatMul"),
    "BlockQuantMatMul short qweight": (_graph(_shrink_input(BQMM, 1, lambda a: a[:-1])), "BlockQuantMatMul"),
    "BlockQuantMatMul short scales": (_graph(_shrink_input(BQMM, 2, lambda a: a[:-1])), "BlockQuantMatMul"),
    "BlockQuantMatMul short mins": (_graph(_shrink_input(BQMM, 3, lambda a: a[:-1])), "BlockQuantMatMul"),
    "Attention heads": (_graph(_set_attr(ATTN, "num_heads", 8)), "Attention"),
    "Attention kv heads": (_graph(_set_attr(ATTN, "kv_num_heads", 1)), "Attention"),
    "Attention short rotary cache": (_graph(_shrink_input(ATTN, 5, lambda a: a[:3])), "Attention"),
}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgelm.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_folder_is_one_line_exit_2(case: str, base: Path, tmp_path: Path) -> None:
    derive, word = CASES[case]
    folder = tmp_path / "m"
    shutil.copytree(base, folder)
    derive(folder)
    command = ["verify", str(folder)] if case == "same-size data altered" else [
        "generate", str(folder), "-p", "hi", "--max-new-tokens", "3", "--threads", "1"]
    proc = _run(command, tmp_path)
    assert proc.returncode >= 0, f"{case}: killed by signal {-proc.returncode}"
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, f"{case}: exit {proc.returncode}\n{proc.stderr[-1500:]}"
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert word.lower() in lines[0].lower(), lines[0]
    assert not (folder / MARKER).exists() and not (tmp_path / MARKER).exists()


def test_the_base_folder_runs_and_verifies(base: Path, tmp_path: Path) -> None:
    assert _run(["verify", str(base)], tmp_path).returncode == 0
    proc = _run(["generate", str(base), "-p", "hi", "--max-new-tokens", "3", "--threads", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_load_with_verify_checks_hashes(base: Path, tmp_path: Path) -> None:
    import edgelm
    from edgelm.errors import ManifestError

    folder = tmp_path / "m"
    shutil.copytree(base, folder)
    _flip_data_byte(folder)
    edgelm.load(folder, context=16)  # sizes match: a plain load does not hash
    with pytest.raises(ManifestError, match="sha256"):
        edgelm.load(folder, context=16, verify=True)



def test_export_records_the_operator_domains_and_load_requires_them(base: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import edgelm
    from edgelm.errors import RuntimeLoadError
    from edgelm.manifest import read_manifest

    assert read_manifest(base).io.operator_domains == ("ai.edgelm", "com.microsoft")
    monkeypatch.setattr(ortops, "library_path", lambda: None)  # an install built without a C compiler
    with pytest.raises(RuntimeLoadError, match="operator library"):
        edgelm.load(base, context=16)
