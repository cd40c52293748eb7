"""Constrained decoding on SmolLM2 int4: the ten JSON schemas in benchmarks/schemas/structured.json
(flat, nested, enum, array, number ranges, a tool call, a pattern, booleans, an array of
objects, optional fields), each greedy and sampled (temperature 0.7, three seeds), with and
without the schema, in the same run:

* the share of replies that parse and validate against the schema (``jsonschema``);
* decode tokens/s of the constrained and the free runs (tokens after the first, timed by
  the decode loop itself) and their ratio, per schema and overall (goal: constrained
  >= 0.9x free);
* the grammar's time per token (llguidance's mask, measured around each fill).

``--engines`` also compares the three engines the design note names on the same token
paths (each constrained greedy reply, then the end token): compile time and mask time per
token for llguidance, outlines-core and xgrammar (those installed), and whether each allows
every token of the path and accepts at its end.

Run: python benchmarks/structured.py [--model models/smollm2-135m-int4] [--seeds 3] [--engines] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas" / "structured.json"


def _valid(text: str, schema: dict[str, Any]) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), schema)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


class _Timed:
    """Times every Matcher.fill (the grammar's share of a step)."""

    def __init__(self) -> None:
        from edgelm import grammar

        self.seconds: list[float] = []
        self._orig = grammar.Matcher.fill
        timed = self

        def fill(m: Any) -> np.ndarray:
            t = time.perf_counter()
            out = timed._orig(m)
            timed.seconds.append(time.perf_counter() - t)
            return out

        grammar.Matcher.fill = fill  # type: ignore[method-assign]


def _run(model: Any, ids: list[int], budget: int, params: Any, constraint: Any) -> tuple[list[int], float]:
    """The reply's tokens and its decode seconds (from the first token to the last)."""
    toks, t0 = [], None
    for tok in model._tokens(ids, budget, params, model.eos_ids, False, constraint):
        if t0 is None:
            t0 = time.perf_counter()
        if tok in model.eos_ids:
            break
        toks.append(tok)
    return toks, (time.perf_counter() - t0) if t0 is not None else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/smollm2-135m-int4"))
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--seeds", type=int, default=3, help="sampled runs per schema (temperature 0.7)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", action="store_true", help="also compare llguidance, outlines-core, xgrammar")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import edgelm
    from edgelm.grammar import Constraint

    model = edgelm.load(args.model, threads=args.threads, context=1024)
    cases = json.loads(SCHEMAS.read_text())
    timer = _Timed()
    settings = [("greedy", edgelm.SamplingParams(temperature=0.0))] + [
        (f"T0.7 s{s}", edgelm.SamplingParams(temperature=0.7, seed=s)) for s in range(args.seeds)]
    rows, paths = [], []
    _run(model, model.encode("hi"), 8, settings[0][1], None)  # warm-up
    for case in cases:
        constraint = Constraint.json_schema(case["schema"])
        ids = model.encode([{"role": "user", "content": case["prompt"]}])
        row: dict[str, Any] = {"schema": case["name"], "runs": []}
        for label, params in settings:
            # Interleaved: the free run and the constrained run back to back.
            free, free_s = _run(model, ids, args.max_new_tokens, params, None)
            n_fill = len(timer.seconds)
            con, con_s = _run(model, ids, args.max_new_tokens, params, constraint)
            fills = timer.seconds[n_fill:]
            text_free, text_con = model.tokenizer.decode(free), model.tokenizer.decode(con)
            row["runs"].append({"setting": label, "free_valid": _valid(text_free, case["schema"]),
                                "constrained_valid": _valid(text_con, case["schema"]),
                                "free_tps": (len(free) - 1) / free_s if len(free) > 1 and free_s else None,
                                "constrained_tps": (len(con) - 1) / con_s if len(con) > 1 and con_s else None,
                                "mask_us": statistics.median(fills) * 1e6 if fills else None,
                                "tokens": len(con), "reply": text_con})
            if label == "greedy":
                paths.append((case, con))
        rows.append(row)
        print(f"[run] {case['name']}: {row['runs'][0]['reply']!r}", file=sys.stderr, flush=True)
    report(rows, args)
    engines = compare_engines(model, paths) if args.engines else None
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "engines": engines}, indent=2))


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    n_runs = sum(len(r["runs"]) for r in rows)
    print(f"\nSmolLM2-135M int4, {len(rows)} JSON schemas x (greedy + {args.seeds} sampled at T 0.7), "
          f"{args.max_new_tokens} new tokens at most, {args.threads} threads\n")
    print("| schema | valid constrained | valid free | mask us/token (median) | constrained / free decode |")
    print("|---|---|---|---|---|")
    ratios_all = []
    for r in rows:
        runs = r["runs"]
        ratios = [x["constrained_tps"] / x["free_tps"] for x in runs if x["constrained_tps"] and x["free_tps"]]
        ratios_all += ratios
        masks = [x["mask_us"] for x in runs if x["mask_us"] is not None]
        print(f"| {r['schema']} | {sum(x['constrained_valid'] for x in runs)}/{len(runs)} | "
              f"{sum(x['free_valid'] for x in runs)}/{len(runs)} | {statistics.median(masks):.0f} | "
              + (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "n/a")
              + " |")
    valid = sum(x["constrained_valid"] for r in rows for x in r["runs"])
    free = sum(x["free_valid"] for r in rows for x in r["runs"])
    masks = [x["mask_us"] for r in rows for x in r["runs"] if x["mask_us"] is not None]
    print(f"\nvalid under the schema: {valid}/{n_runs} ({valid / n_runs:.0%}); without it: {free}/{n_runs} "
          f"({free / n_runs:.0%})")
    print(f"mask per token: median {statistics.median(masks):.0f} us (per-run medians {min(masks):.0f}-"
          f"{max(masks):.0f})")
    if ratios_all:
        print(f"constrained decode / free decode, same run: median {statistics.median(ratios_all):.2f}x "
              f"(runs {min(ratios_all):.2f}-{max(ratios_all):.2f})")


# -- the engines on the same token paths -------------------------------------------------


def _byte_vocab(tokenizer_json: Path) -> tuple[dict[bytes, list[int]], list[bytes]]:
    """Each token's bytes (GPT-2's byte-to-character table undone), for outlines-core."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs, extra = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    back = {chr(c): b for b, c in zip(bs, cs, strict=True)}
    by_bytes: dict[bytes, list[int]] = {}
    ordered = [b""] * tok.get_vocab_size()
    for text, i in tok.get_vocab().items():
        try:
            raw = bytes(back[ch] for ch in text)
        except KeyError:  # a special token
            raw = text.encode()
        ordered[i] = raw
        by_bytes.setdefault(raw, []).append(i)
    return by_bytes, ordered


def _bit(mask: np.ndarray, token: int) -> bool:
    return bool((int(mask.view(np.uint32)[token // 32]) >> (token % 32)) & 1)


def compare_engines(model: Any, paths: list[tuple[dict[str, Any], list[int]]]) -> dict[str, Any]:
    vocab = model.manifest.architecture.vocab_size
    eos = sorted(model.eos_ids)[0]
    folder = model.folder
    engines: dict[str, Any] = {}

    def llguidance_engine() -> Any:
        from edgelm.grammar import Constraint, Grammar

        tok = model.grammars.tokenizer

        def compile_(schema: dict[str, Any]) -> Any:
            return Grammar(Constraint.json_schema(schema), tok)

        def start(g: Any) -> Any:
            m = g.matcher()
            return m, lambda: m.fill(), lambda t: m._m.consume_token(t), lambda: m.accepting
        return compile_, start

    def outlines_engine() -> Any:
        import outlines_core as oc
        from outlines_core.json_schema import build_regex_from_schema

        by_bytes, _ = _byte_vocab(folder / "tokenizer.json")
        by_bytes = {b: [i for i in ids if i != eos] for b, ids in by_bytes.items()}
        voc = oc.Vocabulary(eos, {b: ids for b, ids in by_bytes.items() if ids})
        mask = np.zeros((vocab + 31) // 32, np.int32)

        def compile_(schema: dict[str, Any]) -> Any:
            return oc.Index(build_regex_from_schema(json.dumps(schema)), voc)

        def start(index: Any) -> Any:
            g = oc.Guide(index)

            def fill() -> np.ndarray:
                g.write_mask_into(mask.ctypes.data, mask.size, 4)
                return mask

            def advance(t: int) -> bool:
                g.advance(t)
                return True
            return g, fill, advance, g.is_finished
        return compile_, start

    def xgrammar_engine() -> Any:
        import xgrammar as xgr
        from transformers import PreTrainedTokenizerFast

        hf = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        info = xgr.TokenizerInfo.from_huggingface(hf, vocab_size=vocab, stop_token_ids=[eos])
        compiler = xgr.GrammarCompiler(info)
        bitmask = xgr.allocate_token_bitmask(1, vocab)

        def compile_(schema: dict[str, Any]) -> Any:
            return compiler.compile_json_schema(json.dumps(schema))

        def start(compiled: Any) -> Any:
            m = xgr.GrammarMatcher(compiled)

            def fill() -> np.ndarray:
                m.fill_next_token_bitmask(bitmask)
                return bitmask[0].numpy()
            return m, fill, m.accept_token, m.is_terminated
        return compile_, start

    for name, make in (("llguidance", llguidance_engine), ("outlines-core", outlines_engine),
                       ("xgrammar", xgrammar_engine)):
        try:
            t = time.perf_counter()
            compile_, start = make()
            setup = time.perf_counter() - t
        except ImportError as e:
            print(f"[engines] {name}: not installed ({e.name})", file=sys.stderr)
            continue
        compile_s, mask_s, agree, accepted = [], [], 0, 0
        for case, path in paths:
            t = time.perf_counter()
            g = compile_(case["schema"])
            compile_s.append(time.perf_counter() - t)
            _, fill, advance, _ = start(g)
            ok = end = True
            for i, tok in enumerate([*path, eos]):
                t = time.perf_counter()
                mask = fill()
                mask_s.append(time.perf_counter() - t)
                allowed = _bit(np.asarray(mask, np.int32), tok)
                if i == len(path):  # the end token: whether the engine accepts here
                    end = allowed
                elif not allowed:
                    ok = False
                    break
                else:
                    advance(tok)
            agree += ok
            accepted += ok and end
        engines[name] = {"setup_s": setup, "compile_ms_median": statistics.median(compile_s) * 1e3,
                         "compile_ms_max": max(compile_s) * 1e3, "mask_us_median": statistics.median(mask_s) * 1e6,
                         "mask_us_p90": float(np.percentile(mask_s, 90)) * 1e6, "paths_allowed": agree,
                         "paths_accepted": accepted, "paths": len(paths)}
    print("\nThe engines on the same token paths (each schema's constrained greedy reply, then the end token)\n")
    print("| engine | tokenizer setup s | compile ms median (max) | mask us/token median (p90) | "
          "paths allowed | end token allowed at the end |")
    print("|---|---|---|---|---|---|")
    for name, e in engines.items():
        print(f"| {name} | {e['setup_s']:.2f} | {e['compile_ms_median']:.1f} ({e['compile_ms_max']:.1f}) | "
              f"{e['mask_us_median']:.0f} ({e['mask_us_p90']:.0f}) | {e['paths_allowed']}/{e['paths']} | "
              f"{e['paths_accepted']}/{e['paths']} |")
    return engines


if __name__ == "__main__":
    main()
