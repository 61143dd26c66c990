"""The report's figures: one function per figure kind, each taking result tables and returning
:class:`Figure` records (a matplotlib figure with a title, axis units and a legend, and a caption).
A function returns nothing when its tables are absent."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams["figure.max_open_warning"] = 0  # a report holds many figures; each is closed once rendered
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mpqsim.pareto import pareto  # noqa: E402

MARKERS = "osD^v<>PXh*"


@dataclass
class Figure:
    name: str          # file stem
    title: str
    fig: object        # matplotlib Figure
    caption: str


def _styles(keys):
    cmap = plt.get_cmap("tab10")
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _fig(title, ncols=1, w=6.4, h=4.2):
    fig, axes = plt.subplots(1, ncols, figsize=(w * ncols, h), squeeze=False)
    fig.suptitle(title)
    return fig, axes[0]


def roofline(per_op: pd.DataFrame) -> list[Figure]:
    """Per device: every op of every (model, precision, batch) as a point at its arithmetic
    intensity and achieved TFLOP/s, coloured by precision, marked by kernel; the roofs of the
    device's units and its bandwidth."""
    from hwmodels import load_device

    out = []
    ops = per_op[(per_op.gflops > 0) & (per_op.time_us > 0) & (per_op.intensity > 0)].copy()
    ops["tflops"] = ops.gflops / ops.time_us * 1e3  # GFLOP per microsecond = 1e3 TFLOP/s
    for dev, g in ops.groupby("device", sort=False):
        fig, (ax,) = _fig(f"Roofline: {dev} (every op; colour = precision, marker = kernel)")
        colours = _styles(g.precision.unique())
        kernels = list(g.kernel.unique())
        for (prec, ker), h in g.groupby(["precision", "kernel"], sort=False):
            ax.scatter(h.intensity, h.tflops, s=14, color=colours[prec], marker=MARKERS[kernels.index(ker) % len(MARKERS)],
                       alpha=0.7, label=f"{prec} / {ker}")
        try:
            d = load_device(dev)
            x = np.logspace(np.log10(max(g.intensity.min() / 2, 1e-2)), np.log10(g.intensity.max() * 2), 100)
            units = sorted({u for u in g.unit.unique() if u in d.units}, key=lambda u: d.units[u].peak_flops)
            for u in units:
                ax.plot(x, np.minimum(d.units[u].peak_flops, d.bandwidth * x) / 1e12, lw=1, ls="--", color="grey")
                ax.annotate(f"{u} {d.units[u].peak_flops / 1e12:,.0f}", (x[-1], d.units[u].peak_flops / 1e12),
                            fontsize=7, ha="right", va="bottom", color="grey")
        except Exception:  # a device file not bundled: points only
            pass
        ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte of DRAM traffic)",
               ylabel="achieved TFLOP/s")
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=6, ncol=2, loc="lower right")
        out.append(Figure(f"roofline_{dev}", f"Roofline on {dev}", fig,
                          "Each point is one op (shape of one layer, one phase); dashed lines are each unit's dense "
                          "peak and the memory roof (peak bandwidth x intensity)."))
    return out


def _op_group(kind: str, kernel: str, op: str) -> str:
    """The part of the model an op belongs to, for the time and energy breakdown."""
    if op.endswith("lm_head") or kind == "lm_head":
        return "lm_head"
    if kind in ("linear", "expert", "router"):
        return "projections (GEMMs)"
    if kind in ("qk", "av", "softmax") or kernel in ("flash_attention", "paged_decode", "attention_gemm", "softmax"):
        return "attention"
    if kind == "comm" or kernel == "collective":
        return "collectives"
    if kind == "embed":
        return "embedding"
    return {"norm": "norms", "rotary": "rotary", "act": "activation"}.get(kernel, "residual adds, other")


def op_breakdown(per_op: pd.DataFrame) -> list[Figure]:
    """Per (model, device): where a pass's time and energy go, by part of the model (projections,
    attention, norms, ...), for every (precision, batch, phase) of the per-op table."""
    out = []
    need = {"total_us", "total_energy_mj", "kind", "kernel", "op", "phase"}
    if not need <= set(per_op.columns):
        return out
    df = per_op.assign(group=[_op_group(k, ker, o) for k, ker, o in zip(per_op.kind, per_op.kernel, per_op.op)])
    groups = list(dict.fromkeys(["projections (GEMMs)", "lm_head", "attention", "norms", "rotary", "activation",
                                 "residual adds, other", "embedding", "collectives"]))
    colours = _styles(groups)
    for (model, dev), g in df.groupby(["model", "device"], sort=False):
        keys = list(g.groupby(["precision", "batch", "phase"], sort=False).groups)
        fig, axes = _fig(f"{model} on {dev}: where the time and the energy go", 2, w=6.0, h=0.45 * len(keys) + 1.8)
        tot = g.groupby(["precision", "batch", "phase"], sort=False)[["total_us", "total_energy_mj"]].sum()
        y = np.arange(len(keys))
        for ax, col, unit, scale in ((axes[0], "total_us", "ms", 1e-3), (axes[1], "total_energy_mj", "J", 1e-3)):
            left = np.zeros(len(keys))
            share = g.pivot_table(index=["precision", "batch", "phase"], columns="group", values=col, aggfunc="sum")
            share = share.reindex(keys).fillna(0.0)
            share = share.div(share.sum(axis=1).replace(0, np.nan), axis=0) * 100
            for grp in [x for x in groups if x in share.columns]:
                v = share[grp].to_numpy()
                ax.barh(y, v, left=left, color=colours[grp], label=grp)
                left += v
            for j, k in enumerate(keys):
                v = tot.loc[k, col] * scale
                ax.annotate(f"{v:,.3g} {unit}" if v < 100 else f"{v:,.0f} {unit}", (100, j), xytext=(3, 0),
                            textcoords="offset points", va="center", fontsize=6)
            ax.set(xlim=(0, 118), xlabel=f"share of the pass's {'time' if col == 'total_us' else 'energy'} (%)")
            ax.set_yticks(y, [f"{p} b{b} {ph}" for p, b, ph in keys], fontsize=6)
            ax.invert_yaxis()
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=5, bbox_to_anchor=(0.5, -0.01))
        fig.subplots_adjust(bottom=0.75 / (0.45 * len(keys) + 1.8) + 0.04)
        out.append(Figure(f"breakdown_{model}_{dev}", f"{model} on {dev}: time and energy by part of the model", fig,
                          "Share of one pass (prefill of the prompt, or one decode step) spent in each part of the "
                          "model, in time (left) and energy (right; compute, memory traffic and static power of its "
                          "ops); the pass's total at the end of each bar."))
    return out


def _cfg_label(r) -> str:
    return f"{r.device}\n{r.precision}"


def overview(lat: pd.DataFrame) -> list[Figure]:
    """At a glance, per batch (smallest and largest): decode tokens/s of every model (rows) on every
    device and precision (columns), the best of each row boxed, setups that do not fit grey; and
    decode J/token at the largest batch."""
    out = []
    models = list(dict.fromkeys(lat.model))
    cols = lat.drop_duplicates(["device", "precision"])[["device", "precision"]]
    keys = list(cols.itertuples(index=False, name=None))
    big = lat.batch.max()
    for b, col, what, better in ((lat.batch.min(), "decode_tok_s", "decode tokens/s", "max"),
                                 (big, "decode_tok_s", "decode tokens/s", "max"),
                                 (big, "decode_j_per_token", "decode J per token", "min")):
        g = lat[lat.batch == b].set_index(["model", "device", "precision"])
        val = np.full((len(models), len(keys)), np.nan)
        fits = np.zeros_like(val, bool)
        lay = np.full(val.shape, "", dtype=object)
        for i, m in enumerate(models):
            for j, (d, p) in enumerate(keys):
                if (m, d, p) in g.index:
                    r = g.loc[(m, d, p)]
                    val[i, j], fits[i, j] = r[col], bool(r["fits"])
                    lay[i, j] = r["layout"] if "layout" in r and r["layout"] != "tp1" else ""
        shown = np.where(fits, val, np.nan)
        fig, ax = plt.subplots(figsize=(max(8, 0.55 * len(keys)), 0.5 * len(models) + 2.2))
        im = ax.imshow(np.log10(shown), aspect="auto", cmap="viridis" if better == "max" else "viridis_r")
        ax.set_facecolor("#dddddd")
        for i in range(len(models)):
            for j in range(len(keys)):
                txt = f"{val[i, j]:,.0f}" if fits[i, j] and col == "decode_tok_s" else (
                    f"{val[i, j]:.2g}" if fits[i, j] else "no fit")
                ax.text(j, i, txt + (f"\n{lay[i, j]}" if lay[i, j] and fits[i, j] else ""), ha="center", va="center",
                        fontsize=5.5, color="w" if fits[i, j] else "k")
            row = np.where(fits[i], val[i], np.nan)
            if np.isfinite(row).any():
                j = int(np.nanargmax(row) if better == "max" else np.nanargmin(row))
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.set_xticks(range(len(keys)), [f"{d}\n{p}" for d, p in keys], fontsize=6, rotation=90)
        ax.set_yticks(range(len(models)), models, fontsize=7)
        ax.set_title(f"{what} at batch {b} (red box: the best per model; grey: does not fit; tpN: devices)")
        cb = fig.colorbar(im, ax=ax, fraction=0.03)
        cb.set_label(f"log10 {what}")
        out.append(Figure(f"overview_{col}_b{b}", f"{what.capitalize()} at batch {b}, every model, device and precision",
                          fig, "Each cell: one model (row) on one device in one precision (column), on the fewest "
                               "tensor-parallel devices that hold it; red box: the best of the row among setups that "
                               "fit in memory."))
    return out


def latency_vs_batch(lat: pd.DataFrame) -> list[Figure]:
    """Per model: decode time per step and decode tokens/s vs batch, a line per (device, precision)."""
    out = []
    for model, g in lat.groupby("model", sort=False):
        g = g[g.fits]
        if g.empty:
            continue
        fig, (a1, a2) = _fig(f"{model}: decode latency and throughput vs batch (configurations that fit)", 2)
        colours = _styles(g.device.unique())
        styles = dict(zip(g.precision.unique(), ["-", "--", ":", "-.", (0, (3, 1, 1, 1)), (0, (5, 2))] * 4))
        for (dev, prec), h in g.groupby(["device", "precision"], sort=False):
            h = h.sort_values("batch")
            kw = dict(color=colours[dev], ls=styles[prec], marker="o", ms=3, label=f"{dev} {prec}")
            a1.plot(h.batch, h.decode_ms, **kw)
            a2.plot(h.batch, h.decode_tok_s, **kw)
        a1.set(xscale="log", yscale="log", xlabel="batch (sequences)", ylabel="decode step (ms)")
        a2.set(xscale="log", yscale="log", xlabel="batch (sequences)", ylabel="decode tokens/s")
        for a in (a1, a2):
            a.grid(True, which="both", alpha=0.2)
        a2.legend(fontsize=6, ncol=2)
        out.append(Figure(f"latency_{model}", f"{model}: latency and tokens/s vs batch", fig,
                          "Colour = device, line style = precision. One decode step of the whole batch at the "
                          "table's context; layouts over several devices where one does not hold the model."))
    return out


def memory(lat: pd.DataFrame) -> list[Figure]:
    """Per model at its largest batch: weights, KV cache and activations per precision (per device
    of the layout) against each device's capacity."""
    out = []
    for model, g in lat.groupby("model", sort=False):
        b = g.batch.max()
        h = g[(g.batch == b)].drop_duplicates(["precision", "layout"] if "layout" in g else ["precision"])
        h = h.drop_duplicates("precision")
        fig, (ax,) = _fig(f"{model}: memory per device at batch {b} vs capacity")
        x = np.arange(len(h))
        bottom = np.zeros(len(h))
        for col, lab in (("weights_gb", "weights"), ("kv_gb", "KV cache"), ("act_gb", "activations")):
            ax.bar(x, h[col], bottom=bottom, label=lab)
            bottom += h[col].to_numpy()
        caps = g.drop_duplicates("device")[["device", "capacity_gb"]]
        for i, r in enumerate(caps.itertuples()):
            ax.axhline(r.capacity_gb, color="k", lw=0.8, ls=(0, (2, 2 + i)))
            ax.annotate(f"{r.device} {r.capacity_gb:.0f} GB", (len(h) - 0.5, r.capacity_gb), fontsize=7, ha="right",
                        va="bottom")
        labels = [p + (f"\n({lay})" if "layout" in h and lay != "tp1" else "") for p, lay in
                  zip(h.precision, h["layout"] if "layout" in h else [""] * len(h))]
        ax.set_xticks(x, labels, fontsize=7, rotation=20)
        ax.set(ylabel="GB (1e9 bytes) per device", xlabel="precision (layout)")
        ax.legend(fontsize=7, loc="upper right")
        out.append(Figure(f"memory_{model}", f"{model}: memory breakdown", fig,
                          "Weights + KV cache (held at the table's context) + peak activations; horizontal lines "
                          "are device capacities."))
    return out


def energy(lat: pd.DataFrame) -> list[Figure]:
    """Per model: decode J/token at the smallest and largest batch per (device, precision), and the
    board power against the power cap."""
    out = []
    for model, g in lat.groupby("model", sort=False):
        g = g[g.fits]
        if g.empty or "decode_j_per_token" not in g:
            continue
        fig, (a1, a2) = _fig(f"{model}: energy per token and board power (decode)", 2)
        keys = g.drop_duplicates(["device", "precision"])[["device", "precision"]].to_records(index=False)
        x = np.arange(len(keys))
        for j, b in enumerate(sorted({g.batch.min(), g.batch.max()})):
            h = g[g.batch == b].set_index(["device", "precision"])
            v = [h.decode_j_per_token.get((d, p), np.nan) for d, p in keys]
            a1.bar(x + 0.4 * j - 0.2, v, 0.4, label=f"batch {b}")
            pw = [h.decode_power_w.get((d, p), np.nan) for d, p in keys]
            a2.bar(x + 0.4 * j - 0.2, pw, 0.4, label=f"batch {b}")
        caps = g.drop_duplicates(["device", "precision"]).power_cap_w.to_numpy()
        a2.scatter(x, caps, marker="_", s=200, color="red", label="power cap (W)", zorder=3)
        labels = [f"{d}\n{p}" for d, p in keys]
        for a in (a1, a2):
            a.set_xticks(x, labels, fontsize=6, rotation=90)
        a1.set(yscale="log", ylabel="J per output token")
        a2.set(ylabel="average board power (W)")
        a1.legend(fontsize=7)
        a2.legend(fontsize=7)
        out.append(Figure(f"energy_{model}", f"{model}: energy and power", fig,
                          "Decode energy per generated token (all devices of the layout) and average board power "
                          "per device; red ticks: the power cap the clock is held under."))
    return out


def serving(srv: pd.DataFrame) -> list[Figure]:
    """TTFT and TPOT percentiles vs offered rate per precision, the SLO lines and the highest rate
    that meets the SLO."""
    out = []
    srv = srv[srv["ttft_p99_s"].notna()]  # a sweep's rows for setups that could not run carry only the error
    group = [c for c in ("model", "device") if c in srv]
    for key, g in (srv.groupby(group, sort=False) if group else [(("",), srv)]):
        name = " on ".join(map(str, key if isinstance(key, tuple) else (key,)))
        fig, (a1, a2) = _fig(f"Serving {name}: latency percentiles vs request rate", 2)
        colours = _styles(g.precision.unique())
        for prec, h in g.groupby("precision", sort=False):
            h = h.sort_values("qps")
            for a, col in ((a1, "ttft"), (a2, "tpot")):
                a.plot(h.qps, h[f"{col}_p50_s"], color=colours[prec], ls="--", marker=".", label=f"{prec} p50")
                a.plot(h.qps, h[f"{col}_p99_s"], color=colours[prec], ls="-", marker="o", ms=3, label=f"{prec} p99")
            ok = h[(h.get("sustained", True)) & (h.get("slo_attainment", 1.0) >= 0.9)]
            if len(ok):
                q = ok.qps.max()
                for a in (a1, a2):
                    a.axvline(q, color=colours[prec], lw=0.6, alpha=0.6)
                a1.annotate(f"max {q:g} req/s", (q, a1.get_ylim()[0]), fontsize=6, rotation=90, color=colours[prec])
        for a, col, lab in ((a1, "slo_ttft_s", "TTFT"), (a2, "slo_tpot_s", "TPOT")):
            if col in g:
                a.axhline(g[col].iloc[0], color="red", lw=1, label=f"SLO {lab} {g[col].iloc[0]:g} s")
            a.set(yscale="log", xlabel="offered request rate (requests/s)", ylabel=f"{lab} (s)")
            a.grid(True, which="both", alpha=0.2)
        a2.legend(fontsize=6, ncol=2)
        out.append(Figure(f"serving_{'_'.join(map(str, key if isinstance(key, tuple) else (key,)))}",
                          f"Serving {name}", fig,
                          "Vertical lines: the highest simulated rate that is sustained with >= 90 % of requests "
                          "within the SLO, per precision."))
    return out


def serving_max(smax: pd.DataFrame) -> list[Figure]:
    """Per model: the highest request rate each device and precision serves within the SLO."""
    out = []
    for model, g in smax.groupby("model", sort=False):
        fig, (ax,) = _fig(f"{model}: highest request rate within the SLO, per device and precision")
        devs, precs = list(dict.fromkeys(g.device)), list(dict.fromkeys(g.precision))
        w = 0.8 / len(precs)
        colours = _styles(precs)
        for j, p in enumerate(precs):
            h = g[g.precision == p].set_index("device").reindex(devs)
            ax.bar(np.arange(len(devs)) + (j - (len(precs) - 1) / 2) * w, h.max_qps, w, color=colours[p], label=p)
        slo = (f"TTFT {g.slo_ttft_s.iloc[0]:g} s, TPOT {g.slo_tpot_s.iloc[0]:g} s" if "slo_ttft_s" in g else "the SLO")
        ax.set_xticks(range(len(devs)), devs, fontsize=7)
        ax.set(ylabel="requests/s sustained with >= 90 % within the SLO", xlabel=f"device (SLO: {slo})")
        ax.grid(True, axis="y", alpha=0.2)
        ax.legend(fontsize=7)
        out.append(Figure(f"serving_max_{model}", f"{model}: request rate each setup serves within the SLO", fig,
                          "The highest Poisson request rate each device and precision sustains (bisection over "
                          "simulated rates; a rate the queue keeps up with and 90 % of requests meet the SLO)."))
    return out


def search_front(rec: pd.DataFrame) -> list[Figure]:
    """Every map a hardware-aware search priced: cost on the device vs delta perplexity, the front."""
    fig, (ax,) = _fig("Precision maps: accuracy vs cost on the device")
    colours = _styles(rec.searcher.unique()) if "searcher" in rec else {}
    for name, g in (rec.groupby("searcher", sort=False) if "searcher" in rec else [("maps", rec)]):
        ax.scatter(g.cost, 100 * g.delta, s=14, color=colours.get(name), label=str(name), alpha=0.8)
    f = rec[pareto(rec, "cost", "delta")].sort_values("cost")
    ax.plot(f.cost, 100 * f.delta, color="k", lw=0.8, label="Pareto front")
    unit = str(rec.cost_metric.iloc[0]) if "cost_metric" in rec else "cost"
    ax.set(xlabel=unit, ylabel="delta perplexity (%)", yscale="log")
    ax.grid(True, which="both", alpha=0.2)
    ax.legend(fontsize=7)
    return [Figure("search_front", "Accuracy/cost front of evaluated maps", fig,
                   "Each point is one evaluated precision map; the black line joins those no other map beats in "
                   "both accuracy and cost.")]


def pareto_sizing(points: pd.DataFrame, front: pd.DataFrame | None) -> list[Figure]:
    """Request latency vs J/token of every design of a sizing run, coloured by the low-precision
    share, the front drawn through its optimal designs (per model, map and batch)."""
    out = []
    share = [c for c in points.columns if c.startswith("share_")]
    low = share[-1] if share else None
    for (model, batch), g in points[points.fits].groupby(["model", "batch"], sort=False):
        fig, (ax,) = _fig(f"{model}, batch {batch}: design space (request latency vs energy)")
        sc = None
        for k, (prec, h) in enumerate(g.groupby("precision", sort=False)):
            sc = ax.scatter(h.request_ms, h.request_j_per_token, c=h[low] if low else None, cmap="viridis", s=12,
                            marker=MARKERS[k % len(MARKERS)], vmin=0, vmax=1, label=prec)
            f = h[pareto(h, "request_ms", "request_j_per_token")].sort_values("request_ms")
            ax.plot(f.request_ms, f.request_j_per_token, color="k", lw=0.8)
        if sc is not None and low:
            fig.colorbar(sc, ax=ax, label=f"{low.replace('share_', '')} share of the tensor-array area")
        ax.set(xlabel="request latency (ms: prefill + decode steps)", ylabel="J per output token")
        ax.grid(True, alpha=0.2)
        ax.legend(fontsize=6, title="map (marker)", title_fontsize=7)
        out.append(Figure(f"pareto_{model}_b{batch}", f"{model}, batch {batch}: Pareto front of unit splits", fig,
                          "Every split of the die's tensor-array area; black lines: the Pareto front per map."))
    return out


def pareto_sweep(sw: pd.DataFrame) -> list[Figure]:
    """Per model and batch: every design point's silicon (die area x devices where the sweep has
    generated designs, else board power) against decode time per token, and the Pareto front."""
    out = []
    g = sw[sw.fits.astype(bool)] if "fits" in sw else sw
    g = g.assign(ms_per_token=g.decode_ms / g.batch)
    use_area = "area_mm2" in g and g.area_mm2.notna().any()
    xcol, xlab = ("silicon_mm2", "die area x devices (mm2)") if use_area else ("board_w", "board power x devices (W)")
    g = g.assign(**{xcol: (g.area_mm2 if use_area else g.tdp_w if "tdp_w" in g else np.nan) * g.get("devices", 1)})
    g = g[np.isfinite(g[xcol].astype(float))]
    for (model, batch), h in g.groupby(["model", "batch"], sort=False):
        if batch not in (g.batch.min(), g.batch.max()):
            continue
        fig, (ax,) = _fig(f"{model}, batch {batch}: sweep design space ({xlab.split(' (')[0]} vs decode time)")
        colours = _styles(h.precision.unique())
        for prec, d in h.groupby("precision", sort=False):
            ax.scatter(d[xcol], d.ms_per_token, s=12, color=colours[prec], label=prec, alpha=0.7)
        f = h[pareto(h.astype({xcol: float}), xcol, "ms_per_token")].sort_values(xcol)
        ax.plot(f[xcol], f.ms_per_token, color="k", lw=0.8, label="Pareto front")
        ax.set(xlabel=xlab, ylabel="decode ms per token (step / batch)", yscale="log")
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=6)
        out.append(Figure(f"sweep_{model}_b{batch}", f"{model}, batch {batch}: sweep Pareto front", fig,
                          "Each point is one design point of the sweep that fits; the black line joins those no "
                          "other point beats in both silicon and time."))
    return out


def sizing_answer(best: pd.DataFrame) -> list[Figure]:
    """The optimal split of the tensor-array area vs Q_r and model size, per batch."""
    out = []
    share = [c for c in best.columns if c.startswith("share_")]
    for batch, g in best.groupby("batch", sort=False):
        g = g.sort_values(["params_b", "qr"] if "params_b" in g else ["model", "qr"])
        fig, (ax,) = _fig(f"How much of the chip should be low precision (batch {batch})")
        x = np.arange(len(g))
        bottom = np.zeros(len(g))
        for c in share:
            ax.bar(x, g[c], bottom=bottom, label=c.replace("share_", ""))
            bottom += g[c].to_numpy()
        lo = [c for c in g.columns if c.endswith("_lo")]
        if share and lo:
            k = share[-1].replace("share_", "")
            for i, r in enumerate(g.itertuples()):
                ax.plot([i, i], [1 - getattr(r, f"{k}_hi"), 1 - getattr(r, f"{k}_lo")], color="k", lw=2, alpha=0.5)
        ax.set_xticks(x, [f"{m}\nQ_r {q:.2f}" for m, q in zip(g.model, g.qr)], fontsize=6, rotation=45)
        ax.set(ylabel="share of the tensor-array area", ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
        out.append(Figure(f"sizing_b{batch}", f"Sizing answer, batch {batch}", fig,
                          "Optimal split of the tensor-array area per model and Q_r; the black bar spans the "
                          "low-precision share's range within 1 % of the optimum (a long bar: a flat optimum)."))
    return out


def scaling(search: pd.DataFrame | None, fits: list, points: pd.DataFrame | None) -> list[Figure]:
    """Q_r vs delta perplexity per searched model; Law 1 (size vs maximum Q_r) with its intervals."""
    out = []
    if search is not None and len(search):
        fig, (ax,) = _fig("Quantization ratio vs delta perplexity (searched maps)")
        keys = [k for k in ("model", "searcher") if k in search]
        for m, g in search.groupby(keys, sort=False):
            g = g.sort_values("qr")
            ax.plot(g.qr, 100 * g.delta, marker="o", label=" ".join(map(str, m if isinstance(m, tuple) else (m,))))
        ax.set(xlabel="Q_r (low-precision parameters / all)", ylabel="delta perplexity (%)", yscale="log")
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=7)
        out.append(Figure("qr_delta", "Q_r vs delta perplexity", fig, "The best map found per target ratio."))
    if fits or (points is not None and len(points)):
        from quant.scaling import PUBLISHED_LAW1

        fig, (ax,) = _fig("Law 1: maximum Q_r within a delta-perplexity budget vs model size")
        size = np.logspace(-1, np.log10(500), 100)
        colours = _styles(sorted({f["meta"]["budget"] for f in fits} | set(PUBLISHED_LAW1)))
        for f in fits:
            b, k, c = f["meta"]["budget"], f["params"]["k"], f["params"]["c"]
            ax.plot(size, np.clip(1 - (np.log(size) - c) / k, 0, 1), color=colours[b], label=f"fit, budget {b:g}")
            if f.get("samples"):  # the joint bootstrap draws: the band at the fit's level
                dr = np.asarray(f["samples"], float)
                ys = np.clip(1 - (np.log(size)[None, :] - dr[:, 1:2]) / dr[:, 0:1], 0, 1)
                lv = float(f.get("level", 0.9))
                ax.fill_between(size, *np.quantile(ys, [(1 - lv) / 2, 1 - (1 - lv) / 2], axis=0), color=colours[b],
                                alpha=0.15)
            else:
                iv = f.get("intervals", {})
                corners = [(a, d) for a in iv.get("k", []) for d in iv.get("c", []) if np.isfinite(a) and np.isfinite(d)]
                if corners:
                    ys = np.array([np.clip(1 - (np.log(size) - d) / a, 0, 1) for a, d in corners])
                    ax.fill_between(size, ys.min(0), ys.max(0), color=colours[b], alpha=0.15)
        for b, (k, c) in PUBLISHED_LAW1.items():
            ax.plot(size, np.clip(1 - (np.log(size) - c) / k, 0, 1), color=colours[b], ls=":",
                    label=f"seed 000 published, budget {b:g}")
        if points is not None:
            pred = points["source"].astype(str).str.contains("prediction") if "source" in points else \
                pd.Series(False, index=points.index)
            for b, g in points[~pred].groupby("budget"):
                ax.scatter(g.size_b, g.qr_max, color=colours.get(b, "k"), zorder=3)
            for b, g in points[pred].groupby("budget"):
                ax.scatter(g.size_b, g.qr_max, facecolors="none", edgecolors=colours.get(b, "k"), zorder=3)
        ax.set(xscale="log", xlabel="model size (billions of parameters)", ylabel="maximum Q_r", ylim=(0, 1.05))
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(fontsize=6)
        out.append(Figure("law1", "Law 1: model size vs maximum Q_r", fig,
                          "Filled points: measured maximum Q_r per model and budget; hollow: predictions (not "
                          "measurements); solid lines: fits with their 90 % bootstrap bands (shaded); dotted: seed "
                          "000's published fits."))
    return out


__all__ = ["Figure", "roofline", "latency_vs_batch", "memory", "energy", "serving", "pareto_sizing", "pareto_sweep",
           "sizing_answer", "scaling"]
