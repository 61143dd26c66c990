"""The collective model against measured NCCL timings, and the tensor-parallel scaling of issue 18.

Run: ``python benchmarks/collectives.py [--fit]``. ``--fit`` refits ``hwmodels/calibration/
collectives.json`` (alpha0, send/recv's alpha0 and speed-up, and per link family the per-step latency
and the achieved fraction of the link bandwidth; :func:`sim.collectives.fit`) on the calibration
split of ``benchmarks/data/measured/nccl_a100_dgx.csv``; held out, never fitted: every fourth size
and one topology entirely (all-reduce over 8 GPUs at 4 per node, across two DGX A100 nodes).
Then prices Llama-3.1-70B decode per token at TP 1/2/4/8 on H100 SXM and H200 in bf16 and fp8 at
batch 1, 4 and 64, the B200's NVFP4-over-fp8 gain by TP, and Llama-3.1-405B fp8 on 8 x H100, and compares the TP scaling with TensorRT-LLM's
published H200 figures (Llama-3.1-70B fp8, batch 4: 20.1 / 12.0 / 8.0 / 6.3 ms per token at TP
1 / 2 / 4 / 8, as quoted in issue 18). Writes ``benchmarks/results/collectives.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "measured" / "nccl_a100_dgx.csv"
OUT = ROOT / "benchmarks" / "results" / "collectives.json"
PUBLISHED_H200_70B_FP8_B4 = {1: 20.1, 2: 12.0, 4: 8.0, 8: 6.3}


def fit_and_write(d: pd.DataFrame) -> None:
    from sim import collectives

    p = collectives.fit(d)
    e = collectives.errors(d, p)
    cal = e[~e.held_out]
    doc = dict(command="python benchmarks/collectives.py --fit", fitted_to=f"{DATA.name}: calibration split "
               f"({len(cal)} of {len(e)} timings; held out: every fourth size and all_reduce 8 GPUs at 4 per node)",
               systems={k: repr(v) for k, v in collectives.SYSTEMS.items()}, constants=p,
               calibration_mape_pct=round(float(cal.abs_err_pct.mean()), 2),
               held_out_mape_pct=round(float(e[e.held_out].abs_err_pct.mean()), 2),
               note="alpha in microseconds; efficiency = achieved fraction of the link's datasheet GB/s per direction")
    (ROOT / "hwmodels" / "calibration" / "collectives.json").write_text(json.dumps(doc, indent=1) + "\n")
    collectives.constants.cache_clear()
    print("wrote hwmodels/calibration/collectives.json")


def held_out(d: pd.DataFrame) -> dict:
    from sim import collectives

    e = collectives.errors(d)
    out = {}
    for name, part in (("held_out", e[e.held_out]), ("held_out_topology", e[e.held_out_topology]),
                       ("calibration", e[~e.held_out])):
        out[name] = dict(n=len(part), mape=float(part.abs_err_pct.mean()), median=float(part.abs_err_pct.median()),
                         p90=float(part.abs_err_pct.quantile(0.9)))
    g = e[e.held_out].groupby(["system", "collective", "num_workers", "devices_per_node"])
    out["by_topology"] = [dict(system=s, collective=c, n=int(n), per_node=int(p), count=len(x),
                               mape=float(x.abs_err_pct.mean()), median=float(x.abs_err_pct.median()),
                               pred_over_meas=float(x.ratio.median())) for (s, c, n, p), x in g]
    return out


def tp_scaling() -> list[dict]:
    from hwmodels import load_device
    from quant.precision import preset_map
    from sim.latency import latency_table
    from workloads import load_model
    from workloads.parallel import Layout

    rows = []
    spec = load_model("llama-3.1-70b")
    for dev in ("h100-sxm", "h200"):
        for prec in ("bf16", "fp8"):
            for tp in (1, 2, 4, 8):
                t = latency_table(spec, [load_device(dev)], [preset_map(prec)], [1, 4, 64], 1024, 2048,
                                  layout=Layout(tp))
                for r in t.itertuples():
                    rows.append(dict(model=spec.name, device=dev, precision=prec, tp=tp, batch=int(r.batch),
                                     decode_ms=r.decode_ms, fits=bool(r.fits), comm_ms=r.decode_comm_ms))
    for prec in ("fp8", "nvfp4"):  # the 4-bit-over-fp8 decode gain as each device's shard shrinks (B200)
        for tp in (1, 2, 4, 8):
            t = latency_table(spec, [load_device("b200")], [preset_map(prec)], [4], 1024, 2048, layout=Layout(tp))
            r = t.iloc[0]
            rows.append(dict(model=spec.name, device="b200", precision=prec, tp=tp, batch=4, decode_ms=r.decode_ms,
                             fits=bool(r.fits), comm_ms=r.decode_comm_ms))
    spec = load_model("llama-3.1-405b")
    t = latency_table(spec, [load_device("h100-sxm")], [preset_map("fp8")], [1, 4, 64], 1024, 2048, layout=Layout(8))
    for r in t.itertuples():
        rows.append(dict(model=spec.name, device="h100-sxm", precision="fp8", tp=8, batch=int(r.batch),
                         decode_ms=r.decode_ms, fits=bool(r.fits), comm_ms=r.decode_comm_ms))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", action="store_true", help="refit hwmodels/calibration/collectives.json")
    args = ap.parse_args()
    from sim import collectives

    d = collectives.measurements(DATA)
    if args.fit:
        fit_and_write(d)
    res = dict(constants=collectives.constants(), errors=held_out(d), tp_scaling=tp_scaling())
    e = res["errors"]
    print(f"all-reduce / send-recv model, NCCL on A100 systems: held-out MAPE {e['held_out']['mape']:.1f} % "
          f"(median {e['held_out']['median']:.1f} %, n = {e['held_out']['n']}); the held-out topology (8 GPUs, 4 "
          f"per node) {e['held_out_topology']['mape']:.1f} %; calibration {e['calibration']['mape']:.1f} %")
    print(pd.DataFrame(e["by_topology"]).round(2).to_string(index=False))
    tp = pd.DataFrame(res["tp_scaling"])
    print("\nLlama decode per token (ms; prompt 1024, context 2048):")
    print(tp.pivot_table(index=["model", "device", "precision", "batch"], columns="tp", values="decode_ms").round(2))
    pub = tp[(tp.device == "h200") & (tp.precision == "fp8") & (tp.batch == 4) & (tp.model == "llama-3.1-70b")]
    model = dict(zip(pub.tp, pub.decode_ms))
    res["published_comparison"] = dict(
        what="Llama-3.1-70B fp8 decode on H200, batch 4, TensorRT-LLM (issue 18)", published_ms=PUBLISHED_H200_70B_FP8_B4,
        model_ms=model, published_speedup={k: PUBLISHED_H200_70B_FP8_B4[1] / v for k, v in PUBLISHED_H200_70B_FP8_B4.items()},
        model_speedup={k: model[1] / v for k, v in model.items()})
    print("\nH200 fp8 batch 4, published (TRT-LLM) vs model, ms/token:",
          {k: (PUBLISHED_H200_70B_FP8_B4[k], round(v, 2)) for k, v in model.items()})
    b = tp[(tp.device == "b200") & (tp.batch == 4)].pivot_table(index="tp", columns="precision", values="decode_ms")
    res["b200_4bit_gain"] = {int(k): float(v) for k, v in (b["fp8"] / b["nvfp4"]).items()}
    print("B200 Llama-3.1-70B batch 4: NVFP4 speed-up over fp8 by TP:", {k: round(v, 2) for k, v in res["b200_4bit_gain"].items()},
          "(published NVFP4 over FP8: 1.2-1.3x at TP1, ~1.0x at TP4-8)")
    OUT.write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"recorded in {OUT}")


if __name__ == "__main__":
    main()
