"""Seed 004's proxy quantization on SmolLM2-135M: weight-only perplexity at 3 and 4 bits, round-to-
nearest vs the top 2 % of input dimensions kept in 16 bits, against total weight bits.

Run: ``python benchmarks/proxy.py [--windows 16] [--fractions 0,0.02]``. Evaluation: Persuasion
windows (as ``quant eval``). Seed 004's claim to check: proxy quantization stabilises 3-bit
models but does not beat 4-bit at equal total bits. Writes ``benchmarks/results/proxy.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "proxy.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--window-len", type=int, default=256)
    ap.add_argument("--formats", default="int3_g128,int4_g128,int3_g32,fp4_e2m1_g128,nf3_64,nf4_64")
    ap.add_argument("--fractions", default="0,0.02,0.05")
    args = ap.parse_args()
    from quant.evaluate import Evaluator, read_text, sample_windows
    from quant.fakequant import FakeQuantizer
    from quant.models import load_causal_lm
    from quant.precision import OpFormats, PrecisionMap
    from quant.proxy import proxy_fakequant
    from workloads.optable import total_params

    model, tok, _ = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    ev = Evaluator(fq, sample_windows(tok, read_text("persuasion"), args.windows, args.window_len, 0))
    params = total_params(fq.table)
    high_bits = 16 * sum(m.weight.numel() for m in fq.embeds.values())
    rows = []
    for fmt in args.formats.split(","):
        pmap = PrecisionMap(f"w-{fmt}", roles={"linear": OpFormats.of(fmt, "bf16")})
        for p in map(float, args.fractions.split(",")):
            fq._wcache.clear()
            info = proxy_fakequant(fq, pmap, p)
            r = ev(pmap)
            total_bits = info["weight_bits_proxy"] + high_bits  # the linears plus the 16-bit embeddings
            rows.append(dict(format=fmt, fraction=p, ppl=r["ppl"], ref_ppl=r["ref_ppl"], delta=r["delta"],
                             kept_columns=info["kept_columns"], linear_weight_bits=info["weight_bits_proxy"],
                             total_bits=total_bits, bits_per_param=total_bits / params))
            print(f"{fmt} proxy {p:g}: perplexity {r['ppl']:.3f} ({100 * r['delta']:+.1f} %), "
                  f"{total_bits / params:.3f} bits/parameter", flush=True)
    fq._wcache.clear()
    OUT.write_text(json.dumps(dict(command="python benchmarks/proxy.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), model="smollm2-135m (bundled GGUF)",
        evaluation=f"{args.windows} x {args.window_len} tokens of persuasion", results=rows), indent=1) + "\n")
    print(f"recorded in {OUT}")


if __name__ == "__main__":
    main()
