"""GPTQ vs round-to-nearest on SmolLM2-135M: MXINT4 (and INT4 g128) weight-only perplexity.

Run: ``python benchmarks/gptq.py [--windows 16] [--gptq-windows 32]``. Evaluation: Persuasion
windows (as ``quant eval``); GPTQ calibrated on Northanger Abbey (another text), damping searched
per layer (0.01 / 0.1 / 1 of the mean Hessian diagonal, judged on held-back calibration windows). Writes ``benchmarks/results/gptq.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "gptq.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--gptq-windows", type=int, default=32)
    ap.add_argument("--window-len", type=int, default=256)
    ap.add_argument("--presets", default="w4a16-mx")
    args = ap.parse_args()
    from quant.evaluate import Evaluator, read_text, sample_windows
    from quant.fakequant import FakeQuantizer
    from quant.gptq import gptq_fakequant
    from quant.models import load_causal_lm
    from quant.precision import preset_map

    model, tok, _ = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    ev = Evaluator(fq, sample_windows(tok, read_text("persuasion"), args.windows, args.window_len, 0))
    calib = sample_windows(tok, read_text("northanger_abbey"), args.gptq_windows, args.window_len, 0)
    rows = []
    for name in args.presets.split(","):
        pmap = preset_map(name)
        fq._wcache.clear()
        rtn = ev(pmap)
        t = time.perf_counter()
        layers = gptq_fakequant(fq, pmap, calib)
        secs = time.perf_counter() - t
        gptq = ev(pmap)
        fq._wcache.clear()
        damps = {}
        for r in layers:
            damps[r["damp"]] = damps.get(r["damp"], 0) + 1
        rows.append(dict(preset=name, weight_format=layers[0]["format"], ref_ppl=rtn["ref_ppl"], rtn_ppl=rtn["ppl"],
                         rtn_delta=rtn["delta"], gptq_ppl=gptq["ppl"], gptq_delta=gptq["delta"], layers=len(layers),
                         output_error_ratio=sum(r["gptq_error"] for r in layers) / sum(r["rtn_error"] for r in layers),
                         damps_chosen=damps, gptq_seconds=secs))
        print(f"{name}: RTN {100 * rtn['delta']:+.2f} %, GPTQ {100 * gptq['delta']:+.2f} % perplexity vs unquantized "
              f"({rtn['ref_ppl']:.3f}); layer output error {rows[-1]['output_error_ratio']:.3f} x RTN; damping {damps}; "
              f"{secs:.0f} s", flush=True)
    OUT.write_text(json.dumps(dict(command="python benchmarks/gptq.py", model="smollm2-135m (bundled GGUF)",
                                   evaluation=f"{args.windows} x {args.window_len} tokens of persuasion",
                                   calibration=f"{args.gptq_windows} x {args.window_len} tokens of northanger_abbey",
                                   results=rows), indent=1) + "\n")
    print(f"recorded in {OUT}")


if __name__ == "__main__":
    main()
