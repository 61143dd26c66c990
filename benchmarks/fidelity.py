"""GEMM fidelity of the kernel-aware cost model: fit on a calibration split, report a held-out split.

Run: ``python benchmarks/fidelity.py [--fit]``. ``--fit`` refits the kernel constants per
architecture (:func:`sim.calibration.fit`) and writes ``hwmodels/calibration/<arch>.json`` (the
constants, what they were fitted to, calibration and held-out error); without it the shipped
calibration is evaluated. Held out (never fitted, :mod:`sim.calibration`): the o_proj shape, every
fourth m, and the A40 entirely (Ampere constants fitted on the A100: the transfer error). Prints
MAPE / median / P90 absolute % error by device, kind and region (memory- vs compute-bound) and
writes ``benchmarks/results/fidelity.json`` and ``fidelity.png`` (predicted vs measured).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sim.calibration import errors, fit, gemm_measurements, predict, summarise
from sim.gemm import price_gemm

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "measured"
OUT = ROOT / "benchmarks" / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit", action="store_true", help="refit and write hwmodels/calibration/*.json")
    args = ap.parse_args()
    df = gemm_measurements(DATA)
    if args.fit:
        fitted = fit(df)
        params = {key: p for key, (_, p) in fitted.items()}
        err = errors(df, predict(df, params))
        for arch in sorted({a for a, _ in fitted}):
            doc = dict(architecture=arch, command="python benchmarks/fidelity.py --fit", constants={}, )
            for (a, kern), (cal_mape, p) in fitted.items():
                if a != arch:
                    continue
                rows = err[(err.architecture == arch) & (err.kernel == kern)]
                c = {k: v for k, v in asdict(p).items() if k in ("stream", "tile_m", "tile_n", "compute", "dequant")}
                c["fixed_us"] = p.fixed_s * 1e6
                doc["constants"][kern] = dict(
                    c, fitted_to=sorted(f"{d} {k}" for d, k in rows[~rows.held_out][["device", "kind"]].drop_duplicates()
                                        .itertuples(index=False)),
                    n_fitted=int((~rows.held_out).sum()), calibration_mape_pct=round(cal_mape, 2),
                    held_out_mape_pct={f"{d} {k}": round(float(g.abs_err_pct.mean()), 2)
                                       for (d, k), g in rows[rows.held_out].groupby(["device", "kind"])})
            path = ROOT / "hwmodels" / "calibration" / f"{arch}.json"
            path.write_text(json.dumps(doc, indent=1) + "\n")
            print(f"wrote {path}")
        from hwmodels.kernels import kernel_params

        kernel_params.cache_clear()
        from sim import lowering

        lowering._MEMO.clear()
    err = errors(df, predict(df))
    c = np.array([price_gemm(d, [m], n, k, w, a, kern).bound[0] for d, m, n, k, w, a, kern in
                  err[["device", "m", "n", "k", "weight_fmt", "act_fmt", "kernel"]].itertuples(index=False)])
    err["region"] = c
    held = err[err.held_out]
    by_kind = summarise(held, ["device", "kind"])
    by_region = summarise(held, ["device", "kind", "region"])
    cal = summarise(err[~err.held_out], ["device", "kind"])
    print("held-out split (never fitted):")
    print(by_kind.to_string(index=False, float_format="{:.2f}".format))
    print(by_region.to_string(index=False, float_format="{:.2f}".format))
    print("calibration split:")
    print(cal.to_string(index=False, float_format="{:.2f}".format))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fidelity.json").write_text(json.dumps(dict(
        split="held out: o_proj/attn_post_proj shapes, every fourth m, the A40 entirely; never fitted",
        held_out=by_kind.to_dict("records"), held_out_by_region=by_region.to_dict("records"),
        calibration=cal.to_dict("records")), indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    for (dev, kind), g in held.groupby(["device", "kind"]):
        ax.scatter(g.time_s * 1e3, g.predicted_s * 1e3, s=8, label=f"{dev} {kind}")
    lim = [held.time_s.min() * 1e3 / 1.5, held.time_s.max() * 1e3 * 1.5]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)",
           title="GEMM time, held-out split (never fitted)")
    ax.legend(fontsize=7)
    fig.savefig(OUT / "fidelity.png", dpi=120, bbox_inches="tight")
    print(f"recorded in {OUT / 'fidelity.json'} and fidelity.png")


if __name__ == "__main__":
    main()
