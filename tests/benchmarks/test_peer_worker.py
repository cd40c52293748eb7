"""The process compare_peers.py drives for each runtime: its edgelm backend must give the
runtime's own greedy tokens and teacher-forced logits (the peers' backends need their
venvs, which the benchmark creates; they are not installed for the tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgelm
from edgelm.export import ExportConfig, export
from edgelm.sampling import SamplingParams

WORKER = Path(__file__).resolve().parents[2] / "benchmarks" / "peers" / "worker.py"


@pytest.fixture(scope="module")
def tiny_int8(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("worker") / "int8"
    export(str(tiny_models["llama-tied"]), out, ExportConfig(quant="int8", progress=False, verify_prompts=2))
    return out


def test_edgelm_worker_protocol(tiny_int8: Path, tmp_path: Path) -> None:
    prompt = [5, 17, 42, 99, 3, 8, 250, 11, 64, 7]
    seqs = [prompt, prompt[::-1]]
    requests = [{"cmd": "run", "prompt": prompt, "new_tokens": 12},
                {"cmd": "logits", "sequences": seqs, "prefill": 4, "out": str(tmp_path / "l.npy")},
                {"cmd": "rss"}, {"cmd": "bogus"}, {"cmd": "quit"}]
    proc = subprocess.run([sys.executable, str(WORKER), "edgelm", str(tiny_int8), "--threads", "1", "--context", "64"],
                          input="".join(json.dumps(r) + "\n" for r in requests), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    ready, run, logits, rss, bogus = (json.loads(line) for line in proc.stdout.splitlines())
    assert ready["ready"] is True

    model = edgelm.load(tiny_int8, threads=1, context=64)
    greedy = SamplingParams(temperature=0.0)
    # Exactly new_tokens greedy tokens, end-of-sequence ignored: the runtime's own choices.
    assert len(run["tokens"]) == 12
    s = model.session
    s.reset()
    lg = s.step(prompt)
    expected = []
    for _ in range(12):
        expected.append(model.sampler.sample(lg, np.array(prompt + expected, np.int64), greedy))
        lg = s.step([expected[-1]])
    assert run["tokens"] == expected
    assert run["ttft_s"] > 0 and run["decode_s"] > 0

    got = np.load(tmp_path / "l.npy")
    assert logits["rows"] == got.shape[0] == sum(len(q) - 4 for q in seqs)
    s.reset()
    first = s.step(prompt[:4]).copy()
    np.testing.assert_allclose(got[0], first, rtol=0, atol=1e-5)
    assert rss["peak_rss_bytes"] > 10 << 20
    assert "unknown command" in bogus["error"]
