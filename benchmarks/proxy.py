"""Seed 004's proxy quantization on SmolLM2-135M: weight-only perplexity at 3 and 4 bits, round-to-
nearest vs the top 2 % of input dimensions kept in 16 bits, against total weight bits.

Run: ``python benchmarks/proxy.py [--windows 16] [--fractions 0,0.02]``. Evaluation: Persuasion
windows (as ``quant eval``). Seed 004's claim to check: proxy quantization stabilises 3-bit
models but does not beat 4-bit at equal total bits. Each map (with its proxy fraction) is also
priced by the cost model, on the model evaluated and on Llama-2-7B, on the H100 (the kept columns
as a bf16 GEMM beside each quantized one, :func:`quant.precision.assign_format_rows`): what the
kept columns cost in time and bytes. Writes ``benchmarks/results/proxy.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "proxy.json"


def _priced(pmap) -> dict:
    """The map on the H100 (fused engine, context 1024, a 1024-token prefill): the evaluated model
    (``smollm2_*``) and Llama-2-7B (``llama2_7b_*``)."""
    from hwmodels.spec import load_device
    from sim.latency import latency_table
    from workloads.models import load_model

    out = {}
    for key, model in (("smollm2", "smollm2-135m"), ("llama2_7b", "llama-2-7b")):
        t = latency_table(load_model(model), [load_device("h100-sxm")], [pmap], [1, 64], 1024, 1024).set_index("batch")
        out |= {f"{key}_decode_ms_b1": float(t.decode_ms[1]), f"{key}_decode_ms_b64": float(t.decode_ms[64]),
                f"{key}_prefill_ms": float(t.prefill_ms[1]), f"{key}_weights_gb": float(t.weights_gb[1])}
    return out


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
        for p in map(float, args.fractions.split(",")):
            pmap = PrecisionMap(f"w-{fmt}" + (f"+proxy{p:g}" if p else ""), roles={"linear": OpFormats.of(fmt, "bf16")},
                                proxy=p)
            fq._wcache.clear()
            info = proxy_fakequant(fq, pmap, p)
            r = ev(pmap)
            total_bits = info["weight_bits_proxy"] + high_bits  # the linears plus the 16-bit embeddings
            cost = _priced(pmap)
            rows.append(dict(format=fmt, fraction=p, ppl=r["ppl"], ref_ppl=r["ref_ppl"], delta=r["delta"],
                             kept_columns=info["kept_columns"], linear_weight_bits=info["weight_bits_proxy"],
                             total_bits=total_bits, bits_per_param=total_bits / params, **cost))
            print(f"{fmt} proxy {p:g}: perplexity {r['ppl']:.3f} ({100 * r['delta']:+.1f} %), "
                  f"{total_bits / params:.3f} bits/parameter; Llama-2-7B on H100: decode "
                  f"{cost['llama2_7b_decode_ms_b1']:.2f} / {cost['llama2_7b_decode_ms_b64']:.2f} ms at batch 1 / 64, "
                  f"{cost['llama2_7b_weights_gb']:.2f} GB", flush=True)
    fq._wcache.clear()
    OUT.write_text(json.dumps(dict(command="python benchmarks/proxy.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), model="smollm2-135m (bundled GGUF)",
        evaluation=f"{args.windows} x {args.window_len} tokens of persuasion", results=rows), indent=1) + "\n")
    print(f"recorded in {OUT}")


if __name__ == "__main__":
    main()
