"""``mpqsim demo``: latency and memory across the bundled devices and several precisions.

Prices Llama-2-7B and Llama-3.1-70B (prompt 1024, decode at context 2048) at batch 1, 16 and 64
on every bundled device in bf16, fp8, w4a16, mxint4 and mxfp4, writes the full table to
``<out>/latency.csv`` and prints two pivots per model: decode tokens/s and memory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hwmodels import bundled_devices, load_device
from quant.precision import preset_map
from sim.latency import latency_table
from workloads import load_model

DEMO_MODELS = ("llama-2-7b", "llama-3.1-70b")
DEMO_PRECISIONS = ("bf16", "fp8", "w4a16", "mxint4", "mxfp4")
DEMO_BATCHES = (1, 16, 64)
DEMO_PROMPT, DEMO_CONTEXT = 1024, 2048


def demo_table() -> pd.DataFrame:
    devices = [load_device(d) for d in bundled_devices()]
    maps = [preset_map(p) for p in DEMO_PRECISIONS]
    return pd.concat([latency_table(load_model(m), devices, maps, DEMO_BATCHES, DEMO_PROMPT, DEMO_CONTEXT)
                      for m in DEMO_MODELS], ignore_index=True)


def run_demo(out: Path, show) -> pd.DataFrame:
    df = demo_table()
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "latency.csv", index=False)
    for model, g in df.groupby("model", sort=False):
        for b in (DEMO_BATCHES[0], DEMO_BATCHES[-1]):
            gb = g[g["batch"] == b]
            tok = gb.pivot(index="device", columns="precision", values="decode_tok_s")[list(DEMO_PRECISIONS)]
            fits = gb.pivot(index="device", columns="precision", values="fits")[list(DEMO_PRECISIONS)]
            tok = tok.round(0).astype(int).astype(str).where(fits, "no fit")
            print(f"\n{model}: decode tokens/s at batch {b}, context {DEMO_CONTEXT} "
                  "('no fit' = weights + KV + activations exceed device memory)")
            show(tok.reset_index())
        mem = (g[g["batch"] == DEMO_BATCHES[-1]].drop_duplicates("precision")
               .set_index("precision")[["weights_gb", "kv_gb", "act_gb", "total_gb"]])
        print(f"\n{model}: memory (GB = 1e9 bytes) at batch {DEMO_BATCHES[-1]}, context {DEMO_CONTEXT} "
              "(the same on every device)")
        show(mem.reset_index(), floatfmt="{:,.1f}")
    print(f"\nfull table ({len(df)} rows: prefill/decode latency, bounds, memory) in {out / 'latency.csv'}")
    return df
