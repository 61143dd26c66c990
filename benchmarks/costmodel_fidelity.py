"""Cost-model fidelity: predicted vs measured GPU times, with the device files' default efficiencies.

Run: ``python benchmarks/costmodel_fidelity.py [--reference DIR]`` (default ``benchmarks/data/measured``,
the measured data carried in the repository with its sources in the README there).
Prints error statistics and records them in ``benchmarks/results/costmodel_fidelity.json``.

Data (see that folder's README):
* ``gpu_ops_llama2_7b_fp16.csv``: every operator of a Llama-2-7B layer, fp16, A100-80GB and H100
  (vidur's profiles; PyTorch-profiler kernel times, so launch overhead is excluded: priced with 0);
* ``h100_gemm_llama2_7b_shapes.csv``: the five Llama-2-7B GEMM shapes on H100 in bf16, fp16,
  fp8 (per-tensor and row-wise), int8 and int4 weight-only (tinygemm), m = 1 .. 16384, CUDA-graph
  replays (priced with 0 launch overhead too);
* ``benchmarks/results/measured/h100_e2e_llama-2-7b_hf.csv``: whole Llama-2-7B passes on an H100
  through transformers (measured for mpqsim; see the README there).

The efficiencies in the device files are uncalibrated defaults; this script measures how far they
are from reality, op kind by op kind, and is the baseline a calibration must beat.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from hwmodels import load_device
from quant.precision import OpFormats, PrecisionMap, preset_map
from sim.costmodel import assign, assign_table, lower, price
from workloads import load_model
from workloads.optable import AV, LINEAR, QK, SOFTMAX, VECTOR, table_from_rows

H, INTER, HEADS, HD = 4096, 11008, 32, 128
RESULTS = Path(__file__).parent / "results" / "costmodel_fidelity.json"
GPU_DEVICE = {"a100": "a100-80gb", "h100": "h100-sxm", "h100_sxm_80gb": "h100-sxm"}


def _linear(n, k):
    return [dict(name="op", role="linear", kind=LINEAR, n=n, k=k, w_elems=n * k, params=n * k)]


def _vector(fpt, ipt, opt, w=0):
    return [dict(name="op", role="vector", kind=VECTOR, fpt=fpt, ipt=ipt, opt=opt, w_elems=w, params=w)]


ATTN = dict(heads=HEADS, kv_heads=HEADS, head_dim=HD)  # fused (FlashAttention) by default when lowered
VIDUR_OPS = {
    "attn_pre_proj": _linear(3 * H, H),
    "attn_post_proj": _linear(H, H),
    "mlp_up_proj": _linear(2 * INTER, H),
    "mlp_down_proj": _linear(H, INTER),
    "mlp_act": _vector(5 * INTER, 2 * INTER, INTER),
    "input_layernorm": _vector(4 * H, H, H, H),
    "post_attention_layernorm": _vector(4 * H, H, H, H),
    "attn_rope": _vector(3 * 2 * H, 2 * H, 2 * H),
    "add": _vector(H, 2 * H, H),
    "attn_decode": [dict(name="qk", role="attention", kind=QK, **ATTN),
                    dict(name="softmax", role="vector", kind=SOFTMAX, **ATTN),
                    dict(name="av", role="attention", kind=AV, **ATTN)],
}
VIDUR_OPS["attn_prefill"] = VIDUR_OPS["attn_decode"]
GEMM_SHAPES = {"qkv_proj": (3 * H, H), "o_proj": (H, H), "gate_up_proj": (2 * INTER, H),
               "down_proj": (H, INTER), "lm_head": (32000, H)}
GEMM_FORMATS = {"bf16": ("bf16", "bf16"), "fp16": ("fp16", "fp16"), "fp8": ("fp8_e4m3", "fp8_e4m3"),
                "fp8_rowwise": ("fp8_e4m3_chan", "fp8_e4m3_chan"), "int8": ("int8_tens", "int8_tens"),
                "w4a16": ("int4_g128", "bf16")}


def _no_launch(name):
    dev = load_device(name)
    return replace(dev, launch_s=0.0, launch_eager_s=0.0)


def _predict(rows, pmap, device, batch, q, past):
    lowered = lower(assign_table(table_from_rows(rows), pmap), [device])
    return price(lowered, device=0, batch=batch, q=q, past=past)["time"]


def vidur(ref: Path) -> pd.DataFrame:
    d = pd.read_csv(ref / "gpu_ops_llama2_7b_fp16.csv")
    d = d[d.gpu.isin(["a100", "h100"])]
    out = []
    fp16 = preset_map("fp16")
    for (gpu, op), g in d.groupby(["gpu", "op"]):
        dev = _no_launch(GPU_DEVICE[gpu])
        if op == "attn_decode":
            b, q, p = g.batch_size.to_numpy(), np.ones(len(g)), g.kv_cache_size.to_numpy()
        elif op == "attn_prefill":
            b, q, p = np.ones(len(g)), g.prefill_chunk_size.to_numpy(), g.kv_cache_size.to_numpy()
        else:
            b, q, p = g.num_tokens.to_numpy(), np.ones(len(g)), np.zeros(len(g))
        pred = _predict(VIDUR_OPS[op], fp16, dev, b.astype(float), q.astype(float), p.astype(float))
        out.append(pd.DataFrame(dict(source="vidur", gpu=gpu, op=op, m=g.num_tokens.to_numpy(),
                                     measured_ms=g.time_ms_median.to_numpy(), predicted_ms=pred * 1e3)))
    return pd.concat(out, ignore_index=True)


def h100_gemms(ref: Path) -> pd.DataFrame:
    d = pd.read_csv(ref / "h100_gemm_llama2_7b_shapes.csv")
    dev = _no_launch("h100-sxm")
    out = []
    for (kind, op), g in d.groupby(["kind", "op"]):
        w, a = GEMM_FORMATS[kind]
        pmap = PrecisionMap(name=kind, roles={"linear": OpFormats.of(w, a)})
        n, k = GEMM_SHAPES[op]
        m = g.m.to_numpy(dtype=float)
        pred = _predict(_linear(n, k), pmap, dev, m, np.ones(len(g)), np.zeros(len(g)))
        out.append(pd.DataFrame(dict(source="h100_gemm", gpu="h100", op=f"{kind}:{op}", m=g.m.to_numpy(),
                                     measured_ms=g.time_ms.to_numpy(), predicted_ms=pred * 1e3)))
    return pd.concat(out, ignore_index=True)


def h100_e2e(path: Path) -> pd.DataFrame:
    """Whole Llama-2-7B passes measured for mpqsim (benchmarks/results/measured/): prefill kernel
    time vs the model without launch overhead; CUDA-graph decode wall time vs the model with graph
    launches."""
    d = pd.read_csv(path)
    spec = load_model("llama-2-7b")
    model = assign(spec, preset_map("bf16"))
    out = []
    for phase, col, dev in (("prefill", "kernel_ms", _no_launch("h100-sxm")),
                            ("decode_cuda_graph", "wall_ms", load_device("h100-sxm"))):
        g = d[d.phase == phase]
        t = price(lower(model, [dev]), device=0, batch=g.batch.to_numpy(float), q=g.q.to_numpy(float),
                  past=g.past.to_numpy(float))["time"]
        out.append(pd.DataFrame(dict(source="h100_e2e_hf", gpu="h100", op=f"llama-2-7b:{phase}", m=g.batch.to_numpy(),
                                     measured_ms=g[col].to_numpy(), predicted_ms=t * 1e3)))
    return pd.concat(out, ignore_index=True)


def summarise(df: pd.DataFrame, by) -> pd.DataFrame:
    df = df.assign(ratio=df.predicted_ms / df.measured_ms)
    return (df.groupby(by).agg(n=("ratio", "size"),
                               median_abs_err_pct=("ratio", lambda r: float(np.median(np.abs(r - 1)) * 100)),
                               p90_abs_err_pct=("ratio", lambda r: float(np.quantile(np.abs(r - 1), 0.9) * 100)),
                               median_pred_over_meas=("ratio", "median"))
            .reset_index())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default=str(Path(__file__).resolve().parent / "data" / "measured"))
    ref = Path(ap.parse_args().reference)
    e2e = h100_e2e(Path(__file__).parent / "results" / "measured" / "h100_e2e_llama-2-7b_hf.csv")
    df = pd.concat([vidur(ref), h100_gemms(ref), e2e], ignore_index=True)
    df["kind"] = [o.split(":")[0] if s == "h100_gemm" else o.split(":")[1] if s == "h100_e2e_hf" else "gemm" if "proj" in o
                  else "attention" if o in ("attn_decode", "attn_prefill") else "elementwise"
                  for s, o in zip(df.source, df.op)]
    by_op = summarise(df, ["source", "gpu", "op"])
    by_kind = summarise(df, ["source", "gpu", "kind"])
    overall = summarise(df.assign(all="all"), ["all"]).iloc[0]
    print(e2e.round(2).to_string(index=False))
    print()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(by_op.to_string(index=False, float_format="{:.2f}".format))
        print()
        print(by_kind.to_string(index=False, float_format="{:.2f}".format))
    print(f"\noverall: {int(overall.n)} measurements, median |error| {overall.median_abs_err_pct:.1f} %, "
          f"p90 {overall.p90_abs_err_pct:.1f} %, median predicted/measured {overall.median_pred_over_meas:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(dict(
        note="uncalibrated device defaults; launch overhead excluded (kernel times)",
        overall=dict(n=int(overall.n), median_abs_err_pct=overall.median_abs_err_pct,
                     p90_abs_err_pct=overall.p90_abs_err_pct, median_pred_over_meas=overall.median_pred_over_meas),
        by_kind=by_kind.to_dict("records"), by_op=by_op.to_dict("records")), indent=1) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
