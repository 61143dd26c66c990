"""Key findings: a few sentences computed from the tables, for the top of the report."""

from __future__ import annotations

import pandas as pd


def _cfg(r) -> str:
    lay = getattr(r, "layout", "tp1")
    return f"{r.device} {r.precision}" + (f" ({lay})" if lay and lay != "tp1" else "")


def _winners(ok: pd.DataFrame, col: str, best: str) -> dict:
    """model -> the winning row of ``col`` (``max`` or ``min``)."""
    idx = ok.groupby("model", sort=False)[col].idxmax() if best == "max" else ok.groupby("model", sort=False)[col].idxmin()
    return {m: ok.loc[i] for m, i in idx.items()}


def _summary(lat: pd.DataFrame, b, col: str, best: str, what: str) -> str:
    ok = lat[lat.fits & (lat.batch == b)]
    win = _winners(ok, col, best)
    counts = pd.Series([_cfg(r) for r in win.values()]).value_counts()
    top, n = counts.index[0], int(counts.iloc[0])
    others = [f"{m}: {_cfg(r)}" for m, r in win.items() if _cfg(r) != top]
    return (f"**{what} at batch {b}**: {top} for {n} of {len(win)} models" +
            (f" ({'; '.join(others)})" if others else "") + ".")


def latency_findings(lat: pd.DataFrame) -> list[str]:
    if lat.model.nunique() > 3:  # many models: one sentence per question, not per model
        lo, hi = lat.batch.min(), lat.batch.max()
        out = [_summary(lat, lo, "decode_tok_s", "max", "Fastest decode"),
               _summary(lat, hi, "decode_tok_s", "max", "Fastest decode"),
               _summary(lat, hi, "decode_j_per_token", "min", "Least energy per token")]
        if "devices" in lat and (lat.devices > 1).any():  # setups on several devices: also per device
            per = lat.assign(decode_tok_s_per_device=lat.decode_tok_s / lat.devices)
            line = _summary(per, hi, "decode_tok_s_per_device", "max", "Most decode tokens/s per device")
            out.insert(2, line[:-1] + " (tokens/s over the devices of the layout: the fastest setups may use more).")
        big = lat[lat.batch == hi]
        nofit = big[~big.fits]
        if len(nofit):
            ex = ", ".join(f"{r.model} {_cfg(r)} ({r.total_gb:.0f} of {r.capacity_gb:.0f} GB)" for r in nofit.head(3).itertuples())
            out.append(f"**Memory**: {len(nofit)} of {len(big)} setups do not fit at batch {hi} even on the largest "
                       f"layout of one node, e.g. {ex}; every other setup fits on the devices shown (tpN).")
        else:
            out.append(f"**Memory**: every setup fits at batch {hi} (on the devices shown, tpN).")
        return out
    out = []
    for model, g in lat.groupby("model", sort=False):
        ok = g[g.fits]
        parts = []
        for b in sorted({g.batch.min(), g.batch.max()}):
            h = ok[ok.batch == b]
            if h.empty:
                parts.append(f"nothing fits at batch {b}")
                continue
            r = h.loc[h.decode_tok_s.idxmax()]
            e = h.loc[h.decode_j_per_token.idxmin()]
            parts.append(f"at batch {b} the fastest is {_cfg(r)} ({r.decode_tok_s:,.0f} tokens/s, "
                         f"{r.decode_ms:.2f} ms per step) and the most frugal {_cfg(e)} "
                         f"({e.decode_j_per_token:.3g} J/token)")
        nofit = g[~g.fits & (g.batch == g.batch.max())]
        fit_note = ""
        if len(nofit):
            fit_note = (f"; {len(nofit)} of {len(g[g.batch == g.batch.max()])} device/precision setups do not fit "
                        f"at batch {g.batch.max()} (e.g. {_cfg(nofit.iloc[0])}: {nofit.iloc[0].total_gb:.0f} GB "
                        f"needed of {nofit.iloc[0].capacity_gb:.0f})")
        out.append(f"**{model}**: " + "; ".join(parts) + fit_note + ".")
    return out


def serving_findings(srv: pd.DataFrame) -> list[str]:
    out = []
    srv = srv[srv["ttft_p99_s"].notna()]
    group = [c for c in ("model", "device") if c in srv]
    for key, g in (srv.groupby(group, sort=False) if group else [((), srv)]):
        name = " on ".join(map(str, key)) if isinstance(key, tuple) else str(key)
        parts = []
        for prec, h in g.groupby("precision", sort=False):
            ok = h[h.get("sustained", True) & (h.get("slo_attainment", 1.0) >= 0.9)]
            parts.append(f"{prec} {ok.qps.max():g} req/s" if len(ok) else f"{prec} none of the simulated rates")
        slo = (f" (TTFT {g.slo_ttft_s.iloc[0]:g} s, TPOT {g.slo_tpot_s.iloc[0]:g} s)" if "slo_ttft_s" in g else "")
        out.append(f"**Serving {name}**: highest simulated rate sustained with >= 90 % of requests within the SLO"
                   f"{slo}: " + ", ".join(parts) + ".")
    return out


def serving_max_findings(smax: pd.DataFrame) -> list[str]:
    out = []
    for model, g in smax.groupby("model", sort=False):
        slo = f" (TTFT {g.slo_ttft_s.iloc[0]:g} s, TPOT {g.slo_tpot_s.iloc[0]:g} s)" if "slo_ttft_s" in g else ""
        per_dev = []
        for d, h in g.groupby("device", sort=False):
            r = h.loc[h.max_qps.idxmax()]
            per_dev.append(f"{d} {r.max_qps:.1f} ({r.precision})")
        out.append(f"**Serving {model}**: the highest request rate within the SLO{slo}, best precision per device: "
                   + ", ".join(per_dev) + " req/s.")
    return out


def sizing_findings(best: pd.DataFrame) -> list[str]:
    share = [c for c in best.columns if c.startswith("share_")]
    if not share:
        return []
    low = share[-1].replace("share_", "")
    out = []
    if "batch" not in best:
        return out
    for b, g in best.groupby("batch", sort=False):
        tgt = g["target_qr"] if "target_qr" in g else g["qr"]
        bits = []
        for t, h in g.groupby(tgt, sort=True):
            vals = ", ".join(f"{m} {100 * v:.0f} % [{100 * a:.0f}-{100 * z:.0f}]" for m, v, a, z in
                             zip(h.model, h[share[-1]], h[f"{low}_lo"], h[f"{low}_hi"]))
            bits.append(f"at Q_r {t:g}: {vals}")
        out.append(f"**Sizing, batch {b}**: the {low} share of the tensor-array area that minimises the objective "
                   + "; ".join(bits) + " ([range]: every share within 1 % of the optimum; a wide range: the split hardly matters).")
    return out


def scaling_findings(fits: list) -> list[str]:
    out = []
    for f in fits:
        iv = f.get("intervals", {})
        k, c = f["params"]["k"], f["params"]["c"]
        ki = iv.get("k", [float("nan")] * 2)
        out.append(f"**Law 1 at a {100 * f['meta']['budget']:g} % budget**: k = {k:.2f} (interval {ki[0]:.2f} to "
                   f"{ki[1]:.2f}), c = {c:.2f}, from {f.get('n', '?')} models (few points: a weak fit).")
    return out


__all__ = ["latency_findings", "serving_findings", "serving_max_findings", "sizing_findings", "scaling_findings"]
