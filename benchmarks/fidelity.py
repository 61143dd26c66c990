"""Fidelity of the kernel-aware cost model: fit on a calibration split, report a held-out split.

Run: ``python benchmarks/fidelity.py [--fit]``. ``--fit`` refits the kernel constants per
architecture (GEMMs: :func:`sim.calibration.fit`; element-wise and attention kernels:
:func:`sim.calibration.fit_ops`) and writes ``hwmodels/calibration/<arch>.json`` (the constants,
what they were fitted to, calibration and held-out error); without it the shipped calibration is
evaluated. Held out (never fitted, :mod:`sim.calibration`): one GEMM shape (o_proj) and one norm
(post-attention), every fourth size, and the A40 entirely (Ampere constants fitted on the A100,
scaled by the A40's datasheet: the transfer error), and GEMMs measured on any other GPU with
``benchmarks/gpu/gemm_shapes.py`` and copied to ``benchmarks/results/measured/held_out/<device>/``
(``gemm_transfer``). Also prices whole Llama-2-7B passes against
the transformers runs measured on an H100 (never fitted; eager engine). Prints MAPE / median /
P90 absolute % error by device, kind and region (memory- vs compute-bound) and writes
``benchmarks/results/fidelity.json`` and ``fidelity.png`` (predicted vs measured, held-out split).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sim.calibration import errors, fit, fit_ops, gemm_measurements, op_measurements, predict, predict_ops, summarise
from sim.gemm import price_gemm

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "measured"
E2E = ROOT / "benchmarks" / "results" / "measured" / "h100_e2e_llama-2-7b_hf.csv"
#: measured with ``benchmarks/gpu/e2e_llama.py --compile`` (not yet: no GPU lent since): what the fused engine is held against
E2E_FUSED = ROOT / "benchmarks" / "results" / "measured" / "h100_e2e_llama-2-7b_hf_compiled.csv"
#: GEMMs measured on other GPUs with ``benchmarks/gpu/gemm_shapes.py`` (one folder per device): held
#: out, never fitted; reported as the transfer error (``gemm_transfer``). Empty until a GPU is lent.
HELD_OUT = ROOT / "benchmarks" / "results" / "measured" / "held_out"
OUT = ROOT / "benchmarks" / "results"
FIT_METHOD = ("least squares on log time, then soft-L1 (f_scale 0.05) from that answer; the lower calibration MAPE "
              "kept (sim.calibration._least_squares)")
KEEP = ("stream", "tile_m", "tile_n", "split_k", "split_fill", "compute", "dequant", "dequant_rows", "thread_mbs")  # + fixed_us, kloop_ns


def _write_calibration(fitted: dict, err: pd.DataFrame) -> None:
    for arch in sorted({a for a, _ in fitted}):
        path = ROOT / "hwmodels" / "calibration" / f"{arch}.json"
        kept = json.loads(path.read_text())["constants"] if path.exists() else {}  # kernels not refitted now
        doc = dict(architecture=arch, command="python benchmarks/fidelity.py --fit",
                   note="fractions of the datasheet peaks (peak_tflops of the unit, memory_bandwidth_tbs)",
                   fit=FIT_METHOD,
                   constants={k: v for k, v in kept.items() if (arch, k) not in fitted})
        for (a, kern), (cal_mape, p) in sorted(fitted.items()):
            if a != arch:
                continue
            rows = err[(err.architecture == arch) & (err.kernel == kern)]
            c = {k: float(v) for k, v in asdict(p).items() if k in KEEP}
            c["fixed_us"] = float(p.fixed_s * 1e6)
            c["kloop_ns"] = float(p.kloop_s * 1e9)
            doc["constants"][kern] = dict(
                c, fitted_to=sorted(f"{d} {k}" for d, k in rows[~rows.held_out][["device", "label"]].drop_duplicates()
                                    .itertuples(index=False)),
                n_fitted=int((~rows.held_out).sum()), calibration_mape_pct=round(cal_mape, 2),
                held_out_mape_pct={f"{d} {k}": round(float(g.abs_err_pct.mean()), 2)
                                   for (d, k), g in rows[rows.held_out].groupby(["device", "label"])})
        doc["constants"] = dict(sorted(doc["constants"].items()))
        path.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {path}")


def _clear_memos() -> None:
    from hwmodels.kernels import kernel_params
    from sim import lowering

    kernel_params.cache_clear()
    lowering._MEMO.clear()


def e2e(engine: str, path: Path = E2E) -> pd.DataFrame:
    """Whole Llama-2-7B passes (transformers on an H100, measured for mpqsim) vs the model: prefill
    kernel time without launches, CUDA-graph decode wall time with graph launches."""
    from hwmodels.spec import load_device
    from quant.precision import preset_map
    from sim.assign import assign
    from sim.costmodel import price
    from sim.lowering import lower
    from workloads.models import load_model

    d = pd.read_csv(path)
    model = assign(load_model("llama-2-7b"), preset_map("bf16"))
    dev = load_device("h100-sxm")
    out = []
    for phase, col, dv in (("prefill", "kernel_ms", replace(dev, launch_s=0.0)), ("decode_cuda_graph", "wall_ms", dev)):
        g = d[d.phase == phase]
        lw = lower(model, [dv], engine=engine)
        t = price(lw, device=0, batch=g.batch.to_numpy(float), q=g.q.to_numpy(float), past=g.past.to_numpy(float))
        launches = float(((lw.per_op["launches"][0] + lw.per_op["glue"][0]) * model.ops["repeat"]).sum())
        out.append(pd.DataFrame(dict(engine=engine, phase=phase, batch=g.batch.to_numpy(), measured_ms=g[col].to_numpy(),
                                     predicted_ms=t["time"] * 1e3, measured_kernels=g.kernels.to_numpy(),
                                     modelled_kernels=launches)))
    df = pd.concat(out, ignore_index=True)
    df["abs_err_pct"] = 100 * np.abs(df.predicted_ms / df.measured_ms - 1)
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fit", action="store_true", help="refit and write hwmodels/calibration/*.json")
    ap.add_argument("--only", choices=("gemm", "ops"), help="with --fit: refit only these kernels (keep the others)")
    args = ap.parse_args()
    try:
        gm = gemm_measurements(DATA, HELD_OUT).assign(label=lambda x: x.kind)
    except (ValueError, KeyError) as e:  # a malformed held-out file: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    om = op_measurements(DATA).assign(label=lambda x: x.op)
    if args.fit:
        fitted = (fit(gm) if args.only != "ops" else {}) | (fit_ops(om) if args.only != "gemm" else {})
        params = {key: p for key, (_, p) in fitted.items()}
        err = pd.concat([errors(gm, predict(gm, params)), errors(om, predict_ops(om, params))], ignore_index=True)
        _write_calibration(fitted, err)
        _clear_memos()
    ge, oe = errors(gm, predict(gm)), errors(om, predict_ops(om))
    ge["region"] = [price_gemm(d, [m], n, k, w, a, kern, out_fmt=o).bound[0] for d, m, n, k, w, a, kern, o in
                    ge[["device", "m", "n", "k", "weight_fmt", "act_fmt", "kernel", "out_fmt"]].itertuples(index=False)]
    gt = ge[ge.transfer]
    ge = ge[~ge.transfer]
    gh, oh = ge[ge.held_out], oe[oe.held_out]
    res = dict(split="held out: the o_proj GEMM shape and the post-attention norm, every fourth size, the A40 "
                     "entirely; never fitted",
               gemm_held_out=summarise(gh, ["device", "kind"]).to_dict("records"),
               gemm_held_out_by_region=summarise(gh, ["device", "kind", "region"]).to_dict("records"),
               ops_held_out=summarise(oh, ["device", "kernel"]).to_dict("records"),
               gemm_calibration=summarise(ge[~ge.held_out], ["device", "kind"]).to_dict("records"),
               ops_calibration=summarise(oe[~oe.held_out], ["device", "kernel"]).to_dict("records"))
    if len(gt):  # other GPUs, measured with the shared method, never fitted
        res["gemm_transfer"] = summarise(gt, ["device", "kind"]).to_dict("records")
        res["gemm_transfer_by_region"] = summarise(gt, ["device", "kind", "region"]).to_dict("records")
    ee = pd.concat([e2e("eager"), e2e("fused")] + ([e2e("fused", E2E_FUSED).assign(measured="compiled")]
                                                    if E2E_FUSED.exists() else []), ignore_index=True)
    res["llama2_7b_h100_transformers"] = ee.to_dict("records")
    for key in ("gemm_held_out", "gemm_held_out_by_region", "ops_held_out", "gemm_calibration", "ops_calibration",
                "gemm_transfer", "gemm_transfer_by_region"):
        if key not in res:
            continue
        print(f"{key}:")
        print(pd.DataFrame(res[key]).to_string(index=False, float_format="{:.2f}".format))
    print("Llama-2-7B on the H100, transformers (never fitted):")
    print(ee.to_string(index=False, float_format="{:.2f}".format))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fidelity.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    for (dev, kind), g in pd.concat([gh.assign(what=gh.kind), oh.assign(what=oh.kernel)]).groupby(["device", "what"]):
        ax.scatter(g.time_s * 1e3, g.predicted_s * 1e3, s=6, label=f"{dev} {kind}")
    lim = [1e-3, 10.0]
    ax.plot(lim, lim, "k--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)",
           title="Kernel time, held-out split (never fitted)")
    ax.legend(fontsize=6, ncol=2)
    fig.savefig(OUT / "fidelity.png", dpi=120, bbox_inches="tight")
    print(f"recorded in {OUT / 'fidelity.json'} and fidelity.png")


if __name__ == "__main__":
    main()
