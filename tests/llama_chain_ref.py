"""A plain-numpy model of llama.cpp's sampler chain (src/llama-sampling.cpp, read for its
semantics), for the property tests of the compiled chain. It is written the obvious
way, not the fast way: a candidate list of (id, logit), sorted with Python's sort, DRY by
comparing every pair of suffixes (the kernel uses the linear-time Z-function), sums in
float64 where the kernel sums in float32 or float64 (the tests keep away from cuts that
rounding could move). Tokens at -inf are dropped, as the kernel drops them."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _key(c: tuple[int, float]) -> tuple[float, int]:
    return (-c[1], c[0])  # value descending, then the lower id


def _probs(cands: list[tuple[int, float]]) -> list[float]:
    m = max(v for _, v in cands)
    e = [math.exp(v - m) for _, v in cands]
    s = sum(e)
    return [x / s for x in e]


def _finite(cands: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return [(i, v) for i, v in cands if v > -math.inf]


def penalties(cands, hist, last_n, rp, fp, pp):  # type: ignore[no-untyped-def]
    window = hist if last_n is None else hist[len(hist) - min(last_n, len(hist)):]
    counts: dict[int, int] = {}
    for t in window:
        counts[t] = counts.get(t, 0) + 1
    out = []
    for i, v in cands:
        c = counts.get(i, 0)
        if c:
            v = float(F32(v) * F32(rp)) if v <= 0 else float(F32(v) / F32(rp))
            v = float(F32(v) - (F32(c) * F32(fp) + F32(pp)))
        out.append((i, v))
    return _finite(out)


def dry_penalties(hist, mult, base, allowed, last_n, breakers):  # type: ignore[no-untyped-def]
    """{token: penalty} by definition: for every earlier position, the longest run of the
    context's last tokens that also ends there (cut at the nearest breaker), and the token
    that came next."""
    w = list(hist if last_n is None else hist[len(hist) - min(last_n, len(hist)):])
    L = len(w)
    if mult == 0 or L <= allowed:
        return {}
    rev = w[::-1]
    rep_limit = L
    for i in range(L):  # the nearest breaker: its head i from the end, its tail before it
        fits = [len(b) - 1 for b in breakers if b[0] == rev[i] and len(b) - 1 <= i
                and all(b[1 + o] == rev[i - o - 1] for o in range(len(b) - 1))]
        if fits:
            rep_limit = i - max(fits)
            break
    if rep_limit < allowed:
        return {}
    best: dict[int, int] = {}
    for k in range(1, L):
        n = 0
        while k + n < L and rev[n] == rev[k + n]:
            n += 1
        n = min(n, rep_limit)
        if n >= allowed:
            tok = rev[k - 1]
            best[tok] = max(best.get(tok, -1), n)
    single = {b[0] for b in breakers if len(b) == 1}
    max_exp = int(F32(88.7228391) / F32(math.log(F32(base)))) if base > 1.000001 else 0
    out = {}
    for tok, n in best.items():
        if tok in single:
            continue
        e = n - allowed
        if max_exp > 0 and e > max_exp:
            e = max_exp
        out[tok] = float(F32(float(F32(mult)) * float(F32(base)) ** e))
    return out


def chain(logits: np.ndarray, steps: list[str], hist: list[int], p: dict) -> list[tuple[int, float]]:  # type: ignore[type-arg]
    """The survivors (id, logit) after ``steps`` with parameters ``p`` (SamplingParams'
    field names)."""
    cands = _finite([(i, float(v)) for i, v in enumerate(logits)])
    min_keep = p.get("min_keep", 0)
    for step in steps:
        if step == "penalties":
            cands = penalties(cands, hist, p.get("penalty_last_n"), p.get("repetition_penalty", 1.0),
                              p.get("frequency_penalty", 0.0), p.get("presence_penalty", 0.0))
        elif step == "dry":
            pen = dry_penalties(hist, p.get("dry_multiplier", 0.0), p.get("dry_base", 1.75),
                                p.get("dry_allowed_length", 2), p.get("dry_penalty_last_n"),
                                p.get("dry_sequence_breakers", ()))
            cands = _finite([(i, float(F32(v) - F32(pen[i])) if i in pen else v) for i, v in cands])
        elif step == "top_k":
            k = p.get("top_k", 0)
            if k > 0:
                cands = sorted(cands, key=_key)[:k]
        elif step == "top_p":
            if p.get("top_p", 1.0) < 1.0:
                cands = sorted(cands, key=_key)
                cum, keep = 0.0, len(cands)
                for j, q in enumerate(_probs(cands)):
                    cum += q
                    if cum >= p["top_p"] and j + 1 >= min_keep:
                        keep = j + 1
                        break
                cands = cands[:keep]
        elif step == "min_p":
            if p.get("min_p", 0.0) > 0.0:
                lo = float(F32(max(v for _, v in cands)) + F32(math.log(p["min_p"])))
                kept = [c for c in cands if c[1] >= lo]
                if kept and len(kept) >= min_keep:
                    cands = kept
                else:
                    s = sorted(cands, key=_key)
                    j = 1
                    while j < len(s) and not (s[j][1] < lo and j >= min_keep):
                        j += 1
                    cands = s[:j]
        elif step == "typical":
            if p.get("typical_p", 1.0) < 1.0:
                s = sorted(cands, key=_key)
                q = _probs(s)
                h = -sum(x * math.log(x) for x in q if x > 0)
                order = sorted(range(len(s)), key=lambda j: (abs(-math.log(q[j]) - h) if q[j] > 0 else math.inf,
                                                             s[j][0]))
                cum, keep = 0.0, len(s)
                for j, idx in enumerate(order):
                    cum += q[idx]
                    if cum > p["typical_p"] and (min_keep == 0 or j >= min_keep - 1):
                        keep = j + 1
                        break
                cands = [s[idx] for idx in order[:keep]]
        elif step == "top_n_sigma":
            n = p.get("top_n_sigma", 0.0)
            if n > 0 and len(cands) > 1:
                v = np.array([c[1] for c in cands], np.float64)
                lo = float(F32(v.max() - n * v.std()))
                cands = [c for c in cands if c[1] >= lo]
        elif step == "temperature":
            t = p.get("temperature", 1.0)
            if t <= 0:
                cands = [min(cands, key=_key)]
            elif t != 1.0:
                cands = _finite([(i, float(F32(v) / F32(t))) for i, v in cands])
        else:
            raise ValueError(step)  # XTC is random: tested on its own
    return cands
