"""Hardware-aware vs ratio-only precision search on SmolLM2-135M, priced on the custom-mx accelerator.

Run: ``python benchmarks/hw_search.py``. The ratio-only greedy search (Q_r 0.3 / 0.5 / 0.7) and
the hardware-aware ``hw-greedy`` search under cost budgets equal to the greedy maps' costs
(request latency on custom-mx: batch 1, prompt 128, 128 output tokens) both journal into
``benchmarks/results/hw_search/`` (a re-run evaluates nothing new). Writes
``benchmarks/results/hw_search.json``: every map of both, the joint Pareto front, and for each
ratio-only map whether a hardware-aware map dominates it (no more cost, no more delta, one strictly).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "hw_search"
COMMON = ["--model", "smollm2", "--trials", "8", "--windows", "8", "--device", "custom-mx", "--cost", "latency"]


def run(args):
    cmd = ["mpqsim", "quant", "search", *COMMON, *args]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return "mpqsim quant search " + " ".join(COMMON + args)


def _extremes() -> tuple[float, float]:
    """Costs (ms, as ``quant search --device custom-mx --cost latency`` prices them) of SmolLM2 with
    every search unit high and every unit low (mxint4_32 weights and activations)."""
    import numpy as np

    from hwmodels import load_device
    from quant.fakequant import FakeQuantizer
    from quant.formats import parse_format
    from quant.hwsearch import MapCost
    from quant.models import load_causal_lm
    from quant.precision import OpFormats
    from quant.search import SearchSpace

    model, _, _ = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    space = SearchSpace.build(fq.table, "matmul", OpFormats.of("mxint4_32", "mxint4_32"), OpFormats.of("bf16", "bf16"),
                              parse_format("bf16"))
    cost = MapCost(fq.spec, load_device("custom-mx"), "latency", 1, 128, 256, 128)
    n = len(space.units)
    return cost(space.to_map(np.zeros(n, bool))), cost(space.to_map(np.ones(n, bool)))


def main() -> None:
    from quant.hwsearch import front

    c1 = run(["--searcher", "greedy", "--ratio", "0.3,0.5,0.7", "--trials", "6", "-o", str(OUT / "greedy")])
    greedy = pd.read_csv(OUT / "greedy" / "results.csv")
    c_high, c_low = _extremes()
    # the greedy maps' costs, and (where they cost more than no quantization at all, which a mixed
    # map can: it splits GEMMs the engine merges) a quarter, half and three quarters of the way from
    # the all-low to the all-high map's cost
    spread = [c_low + f * (c_high - c_low) for f in (0.25, 0.5, 0.75)]
    budgets = ",".join(f"{c:.1f}" for c in sorted(set(round(c, 1) for c in list(greedy.cost) + spread)))
    c2 = run(["--searcher", "hw-greedy", "--cost-budget", budgets, "-o", str(OUT / "hw-greedy")])
    hw = pd.read_csv(OUT / "hw-greedy" / "results.csv")
    allrec = pd.concat([pd.read_csv(OUT / s / "front.csv") for s in ("greedy", "hw-greedy")], ignore_index=True)
    allrec["joint_front"] = front(allrec)
    rows = []
    for g in greedy.itertuples():
        dom = hw[(hw.cost <= g.cost) & (hw.delta <= g.delta) & ((hw.cost < g.cost) | (hw.delta < g.delta))]
        best = dom.sort_values("delta").iloc[0] if len(dom) else None
        rows.append(dict(ratio_map_qr=g.qr, ratio_map_delta=g.delta, ratio_map_cost_ms=g.cost, dominated=best is not None,
                         hw_map_qr=None if best is None else best.qr, hw_map_delta=None if best is None else best.delta,
                         hw_map_cost_ms=None if best is None else best.cost))
        print(f"ratio-only Q_r {g.qr:.3f}: delta {100 * g.delta:+.1f} %, {g.cost:.2f} ms" +
              ("" if best is None else f"  <- hw-greedy Q_r {best.qr:.3f}: delta {100 * best.delta:+.1f} %, {best.cost:.2f} ms"))
    for r in hw.sort_values("target_cost").itertuples():
        print(f"hw-greedy within {r.target_cost:.1f} ms: Q_r {r.qr:.3f}, delta {100 * r.delta:+.1f} %, {r.cost:.2f} ms")
    doc = dict(commands=[c1, c2], cost_metric=greedy.cost_metric.iloc[0], all_high_ms=c_high, all_low_ms=c_low,
               hw_greedy=hw[["target_cost", "qr", "delta", "cost"]].to_dict("records"), comparison=rows,
               joint_front=allrec[allrec.joint_front][["searcher", "target", "qr", "flop_ratio", "delta", "cost"]]
               .sort_values("cost").to_dict("records"))
    (ROOT / "benchmarks" / "results" / "hw_search.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"recorded in {ROOT / 'benchmarks' / 'results' / 'hw_search.json'}")


if __name__ == "__main__":
    main()
