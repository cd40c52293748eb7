"""One runtime in its own process, driven over stdin/stdout by compare_peers.py.

Runs under the peer's own venv, so it imports nothing from edgelm unless the backend is
edgelm. Protocol: one JSON object a line each way.

  {"cmd": "run", "prompt": [ids], "new_tokens": N, "lookup": false}
      -> {"ttft_s": ..., "decode_s": ..., "tokens": [...]}   (greedy, exactly N tokens,
         end-of-sequence ignored, so every system does the same work; "lookup": edgelm's
         prompt-lookup decoding; the llamacpp-lookup backend always decodes with
         llama-cpp-python's prompt-lookup draft model)
  {"cmd": "logits", "sequences": [[ids], ...], "prefill": P, "out": "file.npy"}
      -> {"rows": R}  teacher-forced next-token logits: the first P tokens as one
         prefill, then one token a step (the decode path), rows for positions P-1..end-1
  {"cmd": "rss"} -> {"peak_rss_bytes": ...}
  {"cmd": "quit"}

Usage: python worker.py BACKEND MODEL_PATH --threads 2 --context 512
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def peak_rss_bytes() -> int:
    """VmHWM; the twin of edgelm.devices.rss.peak_rss_bytes, which the peers' venvs cannot import."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)


class Backend:
    def generate(self, prompt: list[int], new_tokens: int, lookup: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def teacher_forced(self, ids: list[int], prefill: int) -> np.ndarray:
        raise NotImplementedError


class EdgeLM(Backend):
    def __init__(self, path: str, threads: int, context: int) -> None:
        import edgelm
        from edgelm.bench.runner import timed_generation
        from edgelm.export.verify import teacher_forced
        from edgelm.sampling import SamplingParams

        self.model = edgelm.load(path, threads=threads, context=context)
        self.greedy = SamplingParams(temperature=0.0)
        self._timed, self._forced = timed_generation, teacher_forced

    def generate(self, prompt: list[int], new_tokens: int, lookup: bool = False) -> dict[str, Any]:
        # The loop `edgelm bench` times; with lookup, prompt-lookup decoding.
        r = self._timed(self.model, prompt, new_tokens, self.greedy, lookup=lookup)
        return {"ttft_s": r["ttft_s"], "decode_s": r["decode_s"], "tokens": r["tokens"],
                "tokens_per_pass": r["tokens_per_pass"]}

    def teacher_forced(self, ids: list[int], prefill: int) -> np.ndarray:
        return self._forced(self.model.session, ids, prefill)  # the export verification's loop


class GenAI(Backend):
    def __init__(self, path: str, threads: int, context: int) -> None:
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(path)
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
        self.model = og.Model(config)
        self.context = context

    def _generator(self, length: int) -> Any:
        params = self.og.GeneratorParams(self.model)
        # min_length = max_length: end-of-sequence is masked until the last token.
        params.set_search_options(do_sample=False, max_length=length, min_length=length, batch_size=1)
        return self.og.Generator(self.model, params)

    def generate(self, prompt: list[int], new_tokens: int, lookup: bool = False) -> dict[str, Any]:
        if lookup:
            raise ValueError("ONNX Runtime GenAI has no prompt-lookup decoding")
        g = self._generator(len(prompt) + new_tokens)
        tokens = []
        t0 = time.perf_counter()
        g.append_tokens(np.asarray(prompt, np.int32))
        g.generate_next_token()  # selects from the prefill's logits
        tokens.append(int(g.get_next_tokens()[0]))
        t1 = time.perf_counter()
        for _ in range(new_tokens - 1):
            g.generate_next_token()  # runs the model on the previous token, then selects
            tokens.append(int(g.get_next_tokens()[0]))
        t2 = time.perf_counter()
        return {"ttft_s": t1 - t0, "decode_s": t2 - t1, "tokens": tokens}

    def teacher_forced(self, ids: list[int], prefill: int) -> np.ndarray:
        g = self._generator(self.context)
        rows = []
        for chunk in [ids[:prefill]] + [ids[t:t + 1] for t in range(prefill, len(ids) - 1)]:
            g.append_tokens(np.asarray(chunk, np.int32))
            logits = np.asarray(g.get_logits(), np.float32)
            rows.append(logits.reshape(-1, logits.shape[-1])[-1].copy())  # the last position's
        return np.stack(rows)


class LlamaCpp(Backend):
    def __init__(self, path: str, threads: int, context: int, draft: Any = None) -> None:
        import llama_cpp
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=context, n_batch=512, n_threads=threads, n_threads_batch=threads,
                         logits_all=draft is not None, verbose=False, draft_model=draft)
        self._get = llama_cpp.llama_get_logits_ith
        self._vocab = self.llm.n_vocab()

    def _last_logits(self) -> np.ndarray:
        # The context's own buffer for the last position (no copy; Llama.scores is only
        # filled with logits_all=True, which would make every step copy all rows).
        ptr = self._get(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._vocab,))

    def generate(self, prompt: list[int], new_tokens: int, lookup: bool = False) -> dict[str, Any]:
        if lookup:
            raise ValueError("this worker was started without a draft model (use the llamacpp-lookup backend)")
        llm = self.llm
        llm.reset()
        tokens = []
        t0 = time.perf_counter()
        llm.eval(prompt)
        tokens.append(int(self._last_logits().argmax()))
        t1 = time.perf_counter()
        for _ in range(new_tokens - 1):
            llm.eval(tokens[-1:])
            tokens.append(int(self._last_logits().argmax()))
        t2 = time.perf_counter()
        return {"ttft_s": t1 - t0, "decode_s": t2 - t1, "tokens": tokens}

    def teacher_forced(self, ids: list[int], prefill: int) -> np.ndarray:
        llm = self.llm
        llm.reset()
        llm.eval(ids[:prefill])
        rows = [self._last_logits().copy()]
        for t in range(prefill, len(ids) - 1):
            llm.eval(ids[t:t + 1])
            rows.append(self._last_logits().copy())
        return np.stack(rows).astype(np.float32)


class LlamaCppLookup(LlamaCpp):
    """llama.cpp with llama-cpp-python's prompt-lookup draft model (LlamaPromptLookupDecoding:
    n-gram matches in the text so far, verified in one batch), through Llama.generate, the
    loop that uses a draft model; greedy (temp 0)."""

    def __init__(self, path: str, threads: int, context: int) -> None:
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        super().__init__(path, threads, context, draft=LlamaPromptLookupDecoding(num_pred_tokens=10))

    def generate(self, prompt: list[int], new_tokens: int, lookup: bool = True) -> dict[str, Any]:
        tokens = []
        t0 = time.perf_counter()
        gen = self.llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0, reset=True)
        tokens.append(int(next(gen)))
        t1 = time.perf_counter()
        for tok in gen:
            tokens.append(int(tok))
            if len(tokens) == new_tokens:
                break
        t2 = time.perf_counter()
        gen.close()
        return {"ttft_s": t1 - t0, "decode_s": t2 - t1, "tokens": tokens}


BACKENDS = {"edgelm": EdgeLM, "genai": GenAI, "llamacpp": LlamaCpp, "llamacpp-lookup": LlamaCppLookup}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("backend", choices=sorted(BACKENDS))
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=512)
    args = ap.parse_args()
    t0 = time.perf_counter()
    backend = BACKENDS[args.backend](args.model, args.threads, args.context)
    print(json.dumps({"ready": True, "load_s": time.perf_counter() - t0}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "quit":
            break
        if cmd == "run":
            reply = backend.generate(req["prompt"], req["new_tokens"], bool(req.get("lookup", False)))
        elif cmd == "logits":
            rows = [backend.teacher_forced(ids, req["prefill"]) for ids in req["sequences"]]
            out = np.concatenate(rows)
            np.save(req["out"], out)
            reply = {"rows": int(out.shape[0])}
        elif cmd == "rss":
            reply = {"peak_rss_bytes": peak_rss_bytes()}
        else:
            reply = {"error": f"unknown command {cmd!r}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
