"""``edgelm plan --route``: which requests run on the phone, which go to the cloud, and
what the radio costs.

A workload is a list of request classes (tokens in and out, requests a day, the share
sent to a large hosted model). The device side is ``plan``'s model (J/token, decode speed,
DRAM fit) plus the prompt's prefill; the cloud side is a radio profile (Huang et al.'s
power model: energy per Mbps up and down, a promotion before the first byte and a tail in
a high-power state after the last; ``profiles/radios/``) and a cloud profile (time to
first token, tokens/s, price; ``profiles/cloud/``). Every number of both is sourced or
marked as an assumption, as device profiles are.

Per request sent, the radio spends: promotion + upload at transfer power + the wait for
the reply (the cloud's time to first token and its streaming) at tail power, with the
streamed bytes at transfer power + the tail after the last byte. That counts a full
promotion and tail for every request: requests closer together than the tail share one,
so the figure is an upper bound for bursts of requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..profiler.devices import DeviceProfile, find_profile, get_profile, profiles_dir, read_profile_toml, read_sourced
from .planner import PlanError, PlanResult, plan

__all__ = ["RadioProfile", "CloudProfile", "RequestClass", "RouteResult", "route", "load_radio", "load_cloud",
           "get_radio", "get_cloud", "read_workload", "format_route", "plot_route", "PREFILL_SPEEDUP",
           "DEFAULT_LATENCY_TARGET_S"]

#: Prefill runs this many times faster than decode, at the same power. Assumption, from
#: ``edgelm bench`` on the x86 VM (README: prefill 614 tokens/s, decode 156 tokens/s).
PREFILL_SPEEDUP = 4.0
DEFAULT_LATENCY_TARGET_S = 5.0

_RADIO_FIELDS = {
    "transfer.uplink_power": ("watts_per_mbps", True), "transfer.downlink_power": ("watts_per_mbps", True),
    "transfer.base_power": ("watts", True), "transfer.uplink_throughput": ("bits_per_s", True),
    "transfer.downlink_throughput": ("bits_per_s", True), "promotion.time": ("seconds", True),
    "promotion.power": ("watts", True), "tail.time": ("seconds", True), "tail.power": ("watts", True),
    "latency.round_trip": ("seconds", True),
}
_RADIO_RANGES = {
    "transfer.uplink_power": (0.0, 10.0), "transfer.downlink_power": (0.0, 10.0), "transfer.base_power": (0.0, 20.0),
    "transfer.uplink_throughput": (1e4, 1e11), "transfer.downlink_throughput": (1e4, 1e11),
    "promotion.time": (0.0, 60.0), "promotion.power": (0.0, 20.0), "tail.time": (0.0, 600.0),
    "tail.power": (0.0, 20.0), "latency.round_trip": (0.0, 10.0),
}
_CLOUD_FIELDS = {
    "service.time_to_first_token": ("seconds", True), "service.tokens_per_s": ("count", True),
    "service.price_input": ("usd", True), "service.price_output": ("usd", True),
    "wire.request_overhead": ("bytes", True), "wire.bytes_per_input_token": ("count", True),
    "wire.response_overhead": ("bytes", True), "wire.bytes_per_output_token": ("count", True),
}
_CLOUD_RANGES = {
    "service.time_to_first_token": (0.0, 600.0), "service.tokens_per_s": (0.1, 1e5),
    "service.price_input": (0.0, 1e4), "service.price_output": (0.0, 1e4), "wire.request_overhead": (0.0, 1e8),
    "wire.bytes_per_input_token": (0.0, 1e4), "wire.response_overhead": (0.0, 1e8),
    "wire.bytes_per_output_token": (0.0, 1e5),
}


def _read(path: Path | str, what: str, fields: dict[str, tuple[str, bool]],
          ranges: dict[str, tuple[float, float]]) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """A radio or cloud profile: its TOML, its numbers (sourced, in range) and its sources."""
    data, fail = read_profile_toml(Path(path), what)
    if data.get("schema_version") != 1:
        raise fail("schema_version", f"must be 1, got {data.get('schema_version')!r}")
    for key in ("id", "name"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail(key, "missing (a non-empty string)")
    sources = data.get("sources", {})
    if not isinstance(sources, dict):
        raise fail("sources", "must be a table of field = source")
    values = read_sourced(data, fields, ranges, sources, fail, what)
    return data, {k: float(v) for k, v in values.items() if v is not None}, dict(sources)


@dataclass(frozen=True)
class RadioProfile:
    id: str
    name: str
    uplink_w_per_mbps: float
    downlink_w_per_mbps: float
    base_w: float
    uplink_bps: float
    downlink_bps: float
    promotion_s: float
    promotion_w: float
    tail_s: float
    tail_w: float
    round_trip_s: float
    path: str
    sources: dict[str, str] = field(default_factory=dict)

    def upload(self, nbytes: float) -> tuple[float, float]:
        """(joules, seconds) of sending ``nbytes`` at the uplink throughput."""
        t = 8 * nbytes / self.uplink_bps
        return (self.base_w + self.uplink_w_per_mbps * self.uplink_bps / 1e6) * t, t

    def download(self, nbytes: float) -> tuple[float, float]:
        t = 8 * nbytes / self.downlink_bps
        return (self.base_w + self.downlink_w_per_mbps * self.downlink_bps / 1e6) * t, t

    @property
    def assumptions(self) -> list[str]:
        return sorted(k for k, v in self.sources.items() if v.strip().lower().startswith("assumption"))


@dataclass(frozen=True)
class CloudProfile:
    id: str
    name: str
    ttft_s: float
    tokens_per_s: float
    usd_per_m_input: float
    usd_per_m_output: float
    request_overhead_bytes: float
    bytes_per_input_token: float
    response_overhead_bytes: float
    bytes_per_output_token: float
    path: str
    sources: dict[str, str] = field(default_factory=dict)


def load_radio(path: Path | str) -> RadioProfile:
    data, f, sources = _read(path, "radio", _RADIO_FIELDS, _RADIO_RANGES)
    return RadioProfile(data["id"], data["name"], f["transfer.uplink_power"], f["transfer.downlink_power"],
                        f["transfer.base_power"], f["transfer.uplink_throughput"], f["transfer.downlink_throughput"],
                        f["promotion.time"], f["promotion.power"], f["tail.time"], f["tail.power"],
                        f["latency.round_trip"], str(path), sources)


def load_cloud(path: Path | str) -> CloudProfile:
    data, f, sources = _read(path, "cloud endpoint", _CLOUD_FIELDS, _CLOUD_RANGES)
    return CloudProfile(data["id"], data["name"], f["service.time_to_first_token"], f["service.tokens_per_s"],
                        f["service.price_input"], f["service.price_output"], f["wire.request_overhead"],
                        f["wire.bytes_per_input_token"], f["wire.response_overhead"], f["wire.bytes_per_output_token"],
                        str(path), sources)


def get_radio(id_or_path: str) -> RadioProfile:
    return find_profile(id_or_path, profiles_dir() / "radios", load_radio, "radio")  # type: ignore[no-any-return]


def get_cloud(id_or_path: str) -> CloudProfile:
    return find_profile(id_or_path, profiles_dir() / "cloud", load_cloud,  # type: ignore[no-any-return]
                        "cloud endpoint")


@dataclass(frozen=True)
class RequestClass:
    name: str
    tokens_in: int
    tokens_out: int
    per_day: float
    cloud_share: float

    def __post_init__(self) -> None:
        for k, lo, hi in (("tokens_in", 0, 1 << 22), ("tokens_out", 1, 1 << 22)):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise PlanError(f"request {self.name!r}: {k} must be an integer in [{lo}, {hi}], got {v!r}")
        if not (isinstance(self.per_day, (int, float)) and math.isfinite(self.per_day) and 0 <= self.per_day <= 1e7):
            raise PlanError(f"request {self.name!r}: per_day must be a number in [0, 1e7], got {self.per_day!r}")
        if not (isinstance(self.cloud_share, (int, float)) and 0 <= self.cloud_share <= 1):
            raise PlanError(f"request {self.name!r}: cloud_share must be in [0, 1], got {self.cloud_share!r}")


def read_workload(path: Path | str) -> list[RequestClass]:
    """``[[request]]`` tables of name, tokens_in, tokens_out, per_day and cloud_share."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"{where}: cannot read the workload ({e})") from None
    rows = data.get("request")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise PlanError(f"{where}: a workload is one or more [[request]] tables")
    out = []
    for i, r in enumerate(rows):
        unknown = set(r) - {"name", "tokens_in", "tokens_out", "per_day", "cloud_share"}
        if unknown:
            raise PlanError(f"{where}: request {i + 1}: unknown field {sorted(unknown)[0]!r}")
        try:
            out.append(RequestClass(str(r.get("name", f"request {i + 1}")), r.get("tokens_in"), r.get("tokens_out"),
                                    r.get("per_day"), r.get("cloud_share", 0.0)))
        except PlanError as e:
            raise PlanError(f"{where}: {e}") from None
    return out


@dataclass(frozen=True)
class Costs:
    """One way of serving the workload, per day."""

    joules_generation: float  # the device's decode (plan's figure)
    joules_prefill: float
    joules_radio: float
    usd: float
    mean_latency_s: float  # to the whole reply, averaged over requests
    mean_first_token_s: float
    cloud_requests: float
    battery_j: float | None

    @property
    def joules(self) -> float:
        return self.joules_generation + self.joules_prefill + self.joules_radio

    def battery_percent(self) -> float | None:
        return None if self.battery_j is None else 100 * self.joules / self.battery_j

    def to_dict(self) -> dict[str, Any]:
        return {"joules_per_day": self.joules, "joules_generation": self.joules_generation,
                "joules_prefill": self.joules_prefill, "joules_radio": self.joules_radio,
                "battery_percent_per_day": self.battery_percent(), "cloud_usd_per_day": self.usd,
                "mean_latency_s": self.mean_latency_s, "mean_first_token_s": self.mean_first_token_s,
                "cloud_requests_per_day": self.cloud_requests}


@dataclass(frozen=True)
class RouteResult:
    local: PlanResult
    radio: RadioProfile
    cloud: CloudProfile
    workload: tuple[RequestClass, ...]
    all_local: Costs
    all_cloud: Costs
    routed: Costs
    latency_target_s: float

    @property
    def device(self) -> DeviceProfile:
        return self.local.report.device

    def binding(self, costs: Costs, uses_device: bool) -> str:
        """Which constraint binds: DRAM (the model does not fit, and the plan needs it),
        battery (over the target), latency (the mean reply over the target), or none."""
        if uses_device and not self.local.report.fits:
            return "DRAM"
        pct = costs.battery_percent()
        if pct is not None and pct > self.local.battery_target_percent:
            return "battery"
        if costs.mean_latency_s > self.latency_target_s:
            return "latency"
        return "none"

    def break_even(self, tokens_in: int) -> tuple[str, float | None]:
        """Where sending a request of ``tokens_in`` tokens costs the same energy as running it
        here, in output tokens: ("send_above", n) when requests longer than n are cheaper to
        send, ("send_below", n) when shorter ones are, or ("local", None) / ("send", None)
        when one side is cheaper at every length."""
        a0, a1 = _local_energy(self.local, tokens_in, 0), _local_energy(self.local, tokens_in, 1)
        c0, c1 = _send_energy(self.radio, self.cloud, tokens_in, 0), _send_energy(self.radio, self.cloud, tokens_in, 1)
        local_slope, send_slope = a1 - a0, c1 - c0
        if local_slope == send_slope:
            return ("local", None) if a0 <= c0 else ("send", None)
        n = (c0 - a0) / (local_slope - send_slope)
        if n <= 0:
            return ("send", None) if local_slope > send_slope else ("local", None)
        return ("send_above", n) if local_slope > send_slope else ("send_below", n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device.id, "model": self.local.report.model.name, "radio": self.radio.id,
            "cloud": self.cloud.id, "joules_per_token": self.local.joules_per_token,
            "joules_source": self.local.joules_source, "samples_per_request": self.local.samples_per_request,
            "decode_tokens_per_s": self.local.decode_tokens_per_s, "fits_dram": self.local.report.fits,
            "workload": [vars(c) for c in self.workload], "latency_target_s": self.latency_target_s,
            "battery_target_percent": self.local.battery_target_percent,
            "all_local": {**self.all_local.to_dict(), "binding": self.binding(self.all_local, True)},
            "all_cloud": {**self.all_cloud.to_dict(), "binding": self.binding(self.all_cloud, False)},
            "routed": {**self.routed.to_dict(), "binding": self.binding(self.routed, True)},
            "break_even": {c.name: dict(zip(("rule", "output_tokens"), self.break_even(c.tokens_in), strict=True))
                           for c in self.workload},
            "radio_assumptions": self.radio.assumptions,
        }


def _local_energy(local: PlanResult, tokens_in: int, tokens_out: int) -> float:
    """J of one request on the device: its samples' generated tokens at plan's J/token, and
    the prompt's prefill once (PREFILL_SPEEDUP times decode speed, the same power)."""
    return tokens_out * local.samples_per_request * local.joules_per_token \
        + tokens_in * local.joules_per_token / PREFILL_SPEEDUP


def _local_latency(local: PlanResult, tokens_in: int, tokens_out: int) -> tuple[float, float]:
    first = tokens_in / (PREFILL_SPEEDUP * local.decode_tokens_per_s * max(1, local.samples_per_request))
    per_sample_tps = local.decode_tokens_per_s / local.samples_per_request
    return first, first + tokens_out / per_sample_tps


def _send_energy(radio: RadioProfile, cloud: CloudProfile, tokens_in: int, tokens_out: int) -> float:
    up_j, _ = radio.upload(cloud.request_overhead_bytes + tokens_in * cloud.bytes_per_input_token)
    down_j, _ = radio.download(cloud.response_overhead_bytes + tokens_out * cloud.bytes_per_output_token)
    wait = cloud.ttft_s + tokens_out / cloud.tokens_per_s
    return radio.promotion_w * radio.promotion_s + up_j + radio.tail_w * wait + down_j + radio.tail_w * radio.tail_s


def _send_latency(radio: RadioProfile, cloud: CloudProfile, tokens_in: int, tokens_out: int) -> tuple[float, float]:
    _, up_s = radio.upload(cloud.request_overhead_bytes + tokens_in * cloud.bytes_per_input_token)
    first = radio.promotion_s + up_s + radio.round_trip_s + cloud.ttft_s
    return first, first + tokens_out / cloud.tokens_per_s


def _costs(local: PlanResult, radio: RadioProfile, cloud: CloudProfile, workload: tuple[RequestClass, ...],
           shares: list[float]) -> Costs:
    gen = pre = rad = usd = lat = first = sent = n = 0.0
    for c, s in zip(workload, shares, strict=True):
        here, away = c.per_day * (1 - s), c.per_day * s
        gen += here * c.tokens_out * local.samples_per_request * local.joules_per_token
        pre += here * c.tokens_in * local.joules_per_token / PREFILL_SPEEDUP
        rad += away * _send_energy(radio, cloud, c.tokens_in, c.tokens_out)
        usd += away * (c.tokens_in * cloud.usd_per_m_input + c.tokens_out * cloud.usd_per_m_output) / 1e6
        lf, lt = _local_latency(local, c.tokens_in, c.tokens_out)
        cf, ct = _send_latency(radio, cloud, c.tokens_in, c.tokens_out)
        lat += here * lt + away * ct
        first += here * lf + away * cf
        sent += away
        n += c.per_day
    n = n or 1.0
    return Costs(gen, pre, rad, usd, lat / n, first / n, sent, local.report.device.battery_j)


def route(device: str | DeviceProfile, workload: list[RequestClass], *, radio: str | RadioProfile = "lte",
          cloud: str | CloudProfile = "hosted-large", model: str | None = None, params: str | None = None,
          quant: str | None = None, context: int = 2048, app_dram_share: float = 0.10,
          battery_target_percent: float = 10.0, latency_target_s: float = DEFAULT_LATENCY_TARGET_S,
          samples_per_request: int = 1, store_records: list[Any] | None = None) -> RouteResult:
    """All-local, all-cloud and the workload's own split, per day."""
    if not workload:
        raise PlanError("the workload has no requests")
    if not (math.isfinite(latency_target_s) and latency_target_s > 0):
        raise PlanError(f"latency target must be a number of seconds > 0, got {latency_target_s}")
    dev = device if isinstance(device, DeviceProfile) else get_profile(device)
    r = radio if isinstance(radio, RadioProfile) else get_radio(radio)
    cl = cloud if isinstance(cloud, CloudProfile) else get_cloud(cloud)
    wl = tuple(workload)
    local_tokens = sum(c.per_day * (1 - c.cloud_share) * c.tokens_out for c in wl)
    local = plan(dev, model=model, params=params, quant=quant, tokens_per_day=local_tokens, context=context,
                 app_dram_share=app_dram_share, battery_target_percent=battery_target_percent,
                 store_records=store_records, samples_per_request=samples_per_request)
    return RouteResult(local, r, cl, wl, _costs(local, r, cl, wl, [0.0] * len(wl)),
                       _costs(local, r, cl, wl, [1.0] * len(wl)), _costs(local, r, cl, wl, [c.cloud_share for c in wl]),
                       latency_target_s)


def sweep_shares(result: RouteResult, radio: RadioProfile, shares: list[float]) -> list[Costs]:
    """The workload with every class sent at each share, over ``radio``."""
    return [_costs(result.local, radio, result.cloud, result.workload, [s] * len(result.workload)) for s in shares]


def format_route(res: RouteResult) -> str:
    loc = res.local
    pct = "{:7.2f} %".format
    lines = [f"route: {sum(c.per_day for c in res.workload):,.0f} requests/day on {res.device.name}: "
             f"{loc.report.model.name} ({loc.report.model.quant.value}) here, {res.cloud.name} over {res.radio.name}",
             f"  on the device       {loc.joules_per_token * 1000:.2f} mJ/token [{loc.joules_source}], "
             f"{loc.decode_tokens_per_s:.1f} tokens/s, DRAM {'fits' if loc.report.fits else 'DOES NOT FIT'}; "
             f"prefill at {PREFILL_SPEEDUP:g}x decode speed (assumption)",
             f"  {'':22}{'battery/day':>12}{'radio J':>10}{'reply s':>9}{'first s':>9}{'cloud $/day':>12}  binds"]
    for label, costs, device_used in (("all on the device", res.all_local, True), ("all to the cloud", res.all_cloud,
                                                                                   False),
                                      ("routed (as given)", res.routed, True)):
        b = costs.battery_percent()
        lines.append(f"  {label:22}{pct(b) if b is not None else '      n/a':>12}{costs.joules_radio:10.1f}"
                     f"{costs.mean_latency_s:9.2f}{costs.mean_first_token_s:9.2f}{costs.usd:12.3f}  "
                     f"{res.binding(costs, device_used)}")
    for c in res.workload:
        rule, n = res.break_even(c.tokens_in)
        text = {"send_above": f"sending is cheaper above {n:,.0f} output tokens" if n else "",
                "send_below": f"sending is cheaper below {n:,.0f} output tokens" if n else "",
                "local": "the device is cheaper at every length", "send": "sending is cheaper at every length"}[rule]
        lines.append(f"  break-even          {c.name} ({c.tokens_in} tokens in): {text}")
    lines.append(f"  targets             battery <= {loc.battery_target_percent:g} %/day, mean reply <= "
                 f"{res.latency_target_s:g} s; radio and cloud figures marked 'assumption' in {res.radio.path} and "
                 f"{res.cloud.path}")
    return "\n".join(lines)


def plot_route(res: RouteResult, radios: list[RadioProfile], stem: Path) -> list[Path]:
    """Battery per day and mean reply latency against the share sent to the cloud, one line
    per radio; written as PNG and SVG through temporary files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import _save

    shares = [i / 20 for i in range(21)]
    fig, (ax_b, ax_l) = plt.subplots(1, 2, figsize=(10, 4))
    for radio in radios:
        costs = sweep_shares(res, radio, shares)
        ax_b.plot([100 * s for s in shares], [c.battery_percent() or 0 for c in costs], label=radio.name)
        ax_l.plot([100 * s for s in shares], [c.mean_latency_s for c in costs], label=radio.name)
    ax_b.axhline(res.local.battery_target_percent, color="grey", ls="--", lw=1, label="battery target")
    ax_l.axhline(res.latency_target_s, color="grey", ls="--", lw=1, label="latency target")
    ax_b.set(xlabel="requests sent to the cloud (%)", ylabel="battery per day (%)",
             title=f"{res.device.name}: {res.local.report.model.name} here")
    ax_l.set(xlabel="requests sent to the cloud (%)", ylabel="mean time to the whole reply (s)",
             title=f"cloud: {res.cloud.name}")
    for ax in (ax_b, ax_l):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return _save(fig, stem)
    finally:
        plt.close(fig)
