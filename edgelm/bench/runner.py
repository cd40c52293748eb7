"""``edgelm bench``: timed runs of a model folder through the edgelm runtime.

A fixed synthetic prompt of N tokens, M new tokens (greedy unless told), one warm-up and
R counted runs. Reports time to first token, prefill and decode tokens/s (median, p10,
p90), load time, peak RSS, the share of decode time spent sampling, and energy: measured
by a meter where one can be read (idle power measured first and subtracted), otherwise
estimated from the profiler's model with the measured time per token, and labelled so.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..devices.meters import Meter, Reading, find_meter, net_joules
from ..devices.rss import peak_rss_bytes, reset_peak_rss
from ..errors import EdgeLMError
from ..manifest import MANIFEST_NAME, read_manifest
from ..profiler.devices import get_profile
from ..profiler.energy import bench_context, estimate_energy
from ..sampling import Sampler, SamplingParams
from .record import BenchDevice, BenchEnergy, BenchModel, BenchRecord, BenchSettings

__all__ = ["bench", "measured_energy", "peak_rss_bytes", "reset_peak_rss", "DEFAULT_ESTIMATE_DEVICE", "format_bench", "timed_generation"]

DEFAULT_ESTIMATE_DEVICE = "workstation-x86"
IDLE_SECONDS = 1.0


def _synthetic_prompt(model: Any, n: int) -> list[int]:
    text = ("The history of the lighthouse begins in the ancient world, when fires were lit on hills to guide "
            "ships home. ") * 8
    ids = model.encode(text)
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def _timed_loop(model: Any, loop: Callable[[], Any], meter: Meter | None, idle_w: float
                ) -> tuple[list[Any], dict[str, Any]]:
    """Run one of the runtime's decode loops (``loop()`` makes the generator) from an empty
    cache: its items, the seconds to the first (the time to first token) and of the rest,
    the seconds every sampler spent drawing after the first, and with a meter its reading
    and net joules over the rest."""
    sample = Sampler.sample
    spent = [0.0]

    def timed_sample(self: Sampler, *a: Any, **k: Any) -> int:
        s0 = time.perf_counter()
        tok = sample(self, *a, **k)
        spent[0] += time.perf_counter() - s0
        return tok

    Sampler.sample = timed_sample  # type: ignore[method-assign]  # the samplers are the loop's own
    try:
        model.reset()
        ts = time.perf_counter()
        gen = loop()
        items = [next(gen)]
        ttft = time.perf_counter() - ts
        spent[0] = 0.0  # the prompt's draw counts in the time to first token
        if meter is not None:
            meter.start()
        td = time.perf_counter()
        items += list(gen)
        decode_s = time.perf_counter() - td
    finally:
        Sampler.sample = sample  # type: ignore[method-assign]
    out: dict[str, Any] = {"ttft_s": ttft, "decode_s": decode_s, "sample_s": spent[0]}
    if meter is not None:
        out["reading"] = meter.stop()
        out["energy_j"] = net_joules(out["reading"], idle_w)
    return items, out


def timed_generation(model: Any, prompt: list[int], new_tokens: int, params: SamplingParams,
                     meter: Meter | None = None, idle_w: float = 0.0, lookup: bool = False) -> dict[str, Any]:
    """One generation of exactly ``new_tokens`` (end-of-sequence does not stop it) through
    the runtime's own decode loop (Model._tokens; with ``lookup``, prompt-lookup decoding):
    seconds to first token, seconds of decode, seconds of it spent sampling, the tokens,
    decoded tokens per pass over the weights, and (with a meter) net joules. An unseeded
    ``params`` draws with seed 0, so runs repeat."""
    if params.seed is None:
        params = dataclasses.replace(params, seed=0)
    tokens, out = _timed_loop(model, lambda: model._tokens(list(prompt), new_tokens, params, frozenset(), lookup),
                              meter, idle_w)
    out.update(tokens=tokens, tokens_per_pass=(len(tokens) - 1) / max(1, model.lookup_stats.weight_passes))
    return out


def timed_parallel(model: Any, prompt: list[int], new_tokens: int, params: SamplingParams, sequences: int,
                   meter: Meter | None = None, idle_w: float = 0.0) -> dict[str, Any]:
    """``sequences`` samples of exactly ``new_tokens`` each through the runtime's parallel
    decode loop (Model._parallel_tokens: one prefill, then one batched pass per step), timed
    as :func:`timed_generation` times one; ``sample_s`` counts every sample's draws."""
    if params.seed is None:
        params = dataclasses.replace(params, seed=0)
    steps, out = _timed_loop(model, lambda: model._parallel_tokens(list(prompt), sequences, new_tokens, params,
                                                                    frozenset()), meter, idle_w)
    out.update(tokens=[list(t) for t in zip(*steps, strict=True)], tokens_per_pass=1.0)
    return out


def measured_energy(meter: str, joules_per_token: float, readings: list[Reading], idle: Reading,
                    scope: str) -> BenchEnergy:
    """A record's measured energy from a meter's readings and its idle baseline (local runs
    and a phone's alike): how the meter sampled, the power while measured, and a warning if
    a battery was charging during either."""
    idle_w = idle.power_w
    charging = idle.charging or any(r.charging for r in readings)
    duration = sum(r.duration_s for r in readings)
    return BenchEnergy(
        joules_per_token, f"measured:{meter}", scope=scope, samples=sum(r.samples for r in readings),
        sample_rate_hz=readings[0].rate_hz, idle_power_w=idle_w,
        active_power_w=sum(r.energy_j for r in readings) / duration if duration > 0 else None,
        duration_s=duration, sign_convention=readings[0].sign_convention, charging=charging,
        warning="the battery was charging: this energy figure is meaningless" if charging else None)


def bench(folder: str | Path, *, prompt_tokens: int = 128, new_tokens: int = 64, runs: int = 5, warmup: int = 1,
          threads: int | None = None, sampling: SamplingParams | None = None, meter: Meter | None | str = "auto",
          estimate_device: str = DEFAULT_ESTIMATE_DEVICE, as_profile: str | None = None,
          progress: Callable[[int, int], None] | None = None, lookup: bool = False,
          sequences: int = 1) -> BenchRecord:
    """Benchmark a model folder on this machine; returns the record ``edgelm bench`` stores.
    With ``sequences`` > 1, that many samples decode in lockstep (sampling: an unset
    temperature is 0.8) and the decode speed and energy are their aggregate."""
    from ..runtime import load

    if prompt_tokens < 1 or new_tokens < 2 or runs < 1 or warmup < 0:
        raise EdgeLMError("bench needs prompt_tokens >= 1, new_tokens >= 2, runs >= 1, warmup >= 0")
    folder = Path(folder)
    manifest = read_manifest(folder)
    params = sampling or SamplingParams(temperature=0.0)
    if lookup and params.temperature != 0.0:
        raise EdgeLMError("bench --lookup decodes greedily: it takes no --temperature")
    if isinstance(sequences, bool) or not isinstance(sequences, int) or not 1 <= sequences <= 64:
        raise EdgeLMError(f"bench --sequences must be in [1, 64], got {sequences!r}")
    if sequences > 1:
        if lookup:
            raise EdgeLMError("bench --lookup decodes one sequence: it cannot be combined with --sequences")
        if params.temperature == 0.0:  # greedy samples would all be one
            params = dataclasses.replace(params, temperature=0.8)
    peak_scope = "since load" if reset_peak_rss() else "process lifetime"
    t0 = time.perf_counter()
    model = load(folder, threads=threads, context=prompt_tokens + new_tokens + 1, sequences=sequences)
    load_s = time.perf_counter() - t0
    prompt = _synthetic_prompt(model, prompt_tokens)
    m = find_meter() if meter == "auto" else meter
    assert not isinstance(m, str)
    idle = m.measure(IDLE_SECONDS) if m is not None else None
    idle_w = idle.power_w if idle is not None else 0.0

    def one_run() -> dict[str, Any]:
        if sequences > 1:
            return timed_parallel(model, prompt, new_tokens, params, sequences, meter=m, idle_w=idle_w)
        return timed_generation(model, prompt, new_tokens, params, meter=m, idle_w=idle_w, lookup=lookup)

    total = warmup + runs
    for i in range(warmup):
        one_run()
        if progress:
            progress(i + 1, total)
    results = []
    for i in range(runs):
        results.append(one_run())
        if progress:
            progress(warmup + i + 1, total)
    decoded = sequences * (new_tokens - 1)  # tokens of a run's decode, all samples together
    decode_tps = [decoded / r["decode_s"] for r in results]
    s_per_token = statistics.median(r["decode_s"] for r in results) / decoded
    per_pass = statistics.median(r["tokens_per_pass"] for r in results)
    if m is not None and idle is not None:
        j = statistics.median(r["energy_j"] for r in results) / decoded
        energy = measured_energy(m.name, j, [r["reading"] for r in results], idle,
                                 "decode only, per generated token, idle subtracted (median of the counted runs)")
    else:
        dev = get_profile(estimate_device)
        est = estimate_energy(manifest.architecture, dev, manifest.weights_bytes["total"],
                              context_tokens=bench_context(prompt_tokens, new_tokens), kv_dtype=manifest.kv_dtype,
                              seconds_per_token=s_per_token, tokens_per_pass=per_pass, sequences=sequences)
        energy = BenchEnergy(est.joules_per_token, "estimated", estimate_device=dev.id,
                             method="edgelm profile's energy model at the measured time per token")
    manifest_sha = hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest()
    ttft_ms = statistics.median(r["ttft_s"] for r in results) * 1e3
    return BenchRecord(
        time_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model=BenchModel(str(folder.resolve()), manifest.source.name, manifest_sha,
                         manifest.quantization.mode.value, manifest.parameter_count, manifest.weights_bytes["total"],
                         manifest.kv_dtype, manifest.architecture),
        device=BenchDevice("local", as_profile, platform.machine(), platform.system(), platform.node()),
        settings=BenchSettings(prompt_tokens, new_tokens, runs, warmup, threads, params, lookup, sequences),
        ttft_ms=ttft_ms,
        prefill_tokens_per_s=prompt_tokens / (ttft_ms / 1e3),
        decode_tokens_per_s=statistics.median(decode_tps),
        decode_tokens_per_s_p10=float(np.percentile(decode_tps, 10)),
        decode_tokens_per_s_p90=float(np.percentile(decode_tps, 90)),
        load_s=load_s,
        peak_rss_bytes=peak_rss_bytes(),
        peak_rss_scope=peak_scope,
        sampling_share=statistics.median(r["sample_s"] / r["decode_s"] for r in results),
        energy=energy,
        tokens_per_pass=per_pass,
        versions={"edgelm": __version__, "python": sys.version.split()[0],
                  **{k: str(v) for k, v in manifest.tools.items() if k in ("onnxruntime", "numpy")}},
    )


def format_bench(r: BenchRecord) -> str:
    e = r.energy
    src = e.source + (f" ({e.estimate_device})" if e.estimate_device else "")
    return "\n".join([
        f"run {r.id if r.id is not None else '-'}: {r.model.name} ({r.model.quant}) on {r.device.id} "
        f"[{r.device.machine}], {r.settings.prompt_tokens}-token prompt, "
        f"{r.settings.new_tokens} new tokens, {r.settings.runs} runs",
        f"  time to first token   {r.ttft_ms:9.1f} ms   (prefill {r.prefill_tokens_per_s:.0f} tokens/s)",
        f"  decode                {r.decode_tokens_per_s:9.1f} tokens/s (p10 {r.decode_tokens_per_s_p10:.1f}, "
        f"p90 {r.decode_tokens_per_s_p90:.1f})",
        f"  load                  {r.load_s:9.2f} s",
        f"  peak RSS              {r.peak_rss_bytes / 1e6:9.1f} MB",
        f"  sampling              {r.sampling_share * 100:9.2f} % of decode time",
        *([f"  prompt lookup         {r.tokens_per_pass:9.2f} tokens per pass over the weights"]
          if r.settings.lookup else []),
        *([f"  parallel              {r.settings.sequences:9d} sequences in lockstep: decode is their aggregate, "
           f"{r.decode_tokens_per_s / r.settings.sequences:.1f} tokens/s each, "
           f"{r.joules_per_sequence:.3f} J per sequence"] if r.settings.sequences > 1 else []),
        f"  energy                {e.joules_per_token * 1000:9.2f} mJ/token  [{src}]",
    ])
