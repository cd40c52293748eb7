"""Speed and energy model of decode on a device.

Decode is memory-bound: each token streams every weight once (plus the KV cache read
so far), so

    t_token  = max(bytes_per_token / sustained_bandwidth, ops_per_token / compute_rate)
               + layers x overhead_per_layer
    E_token  = P_active x t_token                         (SoC: cores, caches, fabric)
             + bytes_per_token x 8 x e_dram_per_bit       (DRAM reads)
             + ops_per_token x e_op                       (arithmetic)

Constants and their sources:

* ``e_dram_per_bit``: from the device profile (LPDDR4X 5.0, LPDDR5 4.0, LPDDR5X 3.5
  pJ/bit: assumptions, see profiles/), against Horowitz (ISSCC 2014, "Computing's energy
  problem"): a 64-bit DDR3 access costs 1.3-2.6 nJ, i.e. 20-40 pJ/bit, for desktop DRAM.
* ``E_OP_PJ`` = 0.2 pJ per multiply-accumulate: Horowitz (ISSCC 2014) gives 0.2 pJ for an
  8-bit multiply and 0.03 pJ for an 8-bit add at 45 nm; int8-activation kernels do
  8-bit MACs, and smaller nodes only lower it (an upper bound for 5 nm phones).
* ``P_active``: the device profile's SoC power while decoding (assumptions, sourced
  there).
* ``COMPUTE_MACS_PER_CORE_HZ`` = 16: int8 dot-product MACs per cycle per big core
  (Arm SDOT on a 128-bit NEON pipe: 16 MACs per instruction per pipe, one pipe assumed),
  on ``DECODE_THREADS`` = 4 cores at the profile's top clock (an upper bound: mid cores
  clock lower).
* ``OVERHEAD_S_PER_LAYER`` = 0.14 ms: time per layer per token that is neither bandwidth
  nor arithmetic (operator dispatch, threading), measured on the development machine:
  SmolLM2-135M int4 decodes at 106 tokens/s (9.4 ms) on 2 cores whose sustained read
  bandwidth (26 GB/s) would allow 5.3 ms; (9.4 - 5.3) / 30 layers. For a deep-and-thin
  model it is as large as the bandwidth term, which is why layer count matters.

The MobileLLM paper's orders of magnitude are tests (tests/profiler/test_energy.py):
about 0.1 J per token per billion parameters; a 7B model generating 10 tokens/s drains a
~50 kJ battery in under two hours while a 350M model lasts a day.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..arch import Architecture, KVDtype
from .devices import DeviceProfile

__all__ = ["EnergyEstimate", "estimate_energy", "bytes_per_token", "bench_context", "E_OP_PJ"]

E_OP_PJ = 0.2
COMPUTE_MACS_PER_CORE_HZ = 16
DEFAULT_FREQUENCY_HZ = 2.0e9
OVERHEAD_S_PER_LAYER = 0.14e-3
DECODE_THREADS = 4


@dataclass(frozen=True)
class EnergyEstimate:
    bytes_per_token: float
    macs_per_token: float
    seconds_per_token: float
    bound: str  # "memory" or "compute"
    joules_per_token: float
    soc_joules_per_token: float
    dram_joules_per_token: float
    compute_joules_per_token: float
    battery_j: float | None

    @property
    def decode_tokens_per_s(self) -> float:
        return 1.0 / self.seconds_per_token

    @property
    def power_mw(self) -> float:
        return self.joules_per_token / self.seconds_per_token * 1000

    @property
    def tokens_per_battery_percent(self) -> float | None:
        return None if self.battery_j is None else 0.01 * self.battery_j / self.joules_per_token

    def hours_at(self, tokens_per_s: float) -> float | None:
        """Hours a full battery lasts generating ``tokens_per_s`` continuously."""
        if self.battery_j is None:
            return None
        return self.battery_j / (self.joules_per_token * tokens_per_s) / 3600

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(decode_tokens_per_s=self.decode_tokens_per_s, power_mw=self.power_mw,
                 tokens_per_battery_percent=self.tokens_per_battery_percent)
        return d


def bench_context(prompt_tokens: int, new_tokens: int) -> int:
    """The context a benchmark's decode reads on average: the prompt and half the new
    tokens (bench's estimate and calibration's fit both evaluate the model there)."""
    return prompt_tokens + new_tokens // 2


def bytes_per_token(arch: Architecture, weights_bytes: float, context_tokens: int,
                    kv_dtype: KVDtype | str = KVDtype.FLOAT32) -> float:
    """Weights streamed once per token (a tied table is read once, by the head: the
    embedding reads one row) plus the KV cache read at ``context_tokens`` (a window layer's
    window at most)."""
    return weights_bytes + arch.kv_read_bytes(context_tokens, kv_dtype)


def macs_per_token(arch: Architecture, context_tokens: int) -> float:
    linear = arch.parameter_count() - arch.vocab_size * arch.hidden_size * (0 if arch.tie_word_embeddings else 1)
    attention = 2 * arch.num_layers * arch.num_heads * arch.head_dim * context_tokens
    return float(linear + attention)


def estimate_energy(arch: Architecture, device: DeviceProfile, weights_bytes: float,
                    context_tokens: int = 512, kv_dtype: KVDtype | str = KVDtype.FLOAT32,
                    seconds_per_token: float | None = None, tokens_per_pass: float = 1.0,
                    sequences: int = 1) -> EnergyEstimate:
    """The model above. With ``seconds_per_token`` (a measured decode speed, as ``edgelm
    bench`` has) that time replaces the modelled one in the SoC term; the DRAM and
    arithmetic terms do not depend on it. ``tokens_per_pass`` > 1 (prompt lookup: several
    tokens per pass over the weights) divides the bytes read per token by it;
    ``sequences`` > 1 (parallel samples, one pass over the weights for all) divides the
    weights' bytes by it, each sample still reading its own KV cache."""
    if sequences < 1:
        raise ValueError(f"sequences must be at least 1, got {sequences}")
    kv = bytes_per_token(arch, weights_bytes, context_tokens, kv_dtype) - weights_bytes
    nbytes = (weights_bytes / sequences + kv) / tokens_per_pass
    macs = macs_per_token(arch, context_tokens)
    t_mem = nbytes / device.sustained_bandwidth_bps
    cores = min(DECODE_THREADS, device.cpu_cores)
    rate = cores * (device.max_frequency_hz or DEFAULT_FREQUENCY_HZ) * COMPUTE_MACS_PER_CORE_HZ
    t_compute = macs / rate
    if seconds_per_token is not None and not seconds_per_token > 0:
        raise ValueError(f"seconds_per_token must be positive, got {seconds_per_token}")
    t = seconds_per_token or max(t_mem, t_compute) + arch.num_layers * OVERHEAD_S_PER_LAYER
    soc = device.active_power_w * t
    dram = nbytes * 8 * device.dram_energy_pj_per_bit * 1e-12
    compute = macs * E_OP_PJ * 1e-12
    return EnergyEstimate(bytes_per_token=nbytes, macs_per_token=macs, seconds_per_token=t,
                          bound="memory" if t_mem >= t_compute else "compute",
                          joules_per_token=soc + dram + compute, soc_joules_per_token=soc,
                          dram_joules_per_token=dram, compute_joules_per_token=compute, battery_j=device.battery_j)
