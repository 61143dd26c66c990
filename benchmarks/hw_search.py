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


def main() -> None:
    from quant.hwsearch import front

    c1 = run(["--searcher", "greedy", "--ratio", "0.3,0.5,0.7", "--trials", "6", "-o", str(OUT / "greedy")])
    greedy = pd.read_csv(OUT / "greedy" / "results.csv")
    budgets = ",".join(f"{c:.1f}" for c in greedy.cost)
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
    doc = dict(commands=[c1, c2], cost_metric=greedy.cost_metric.iloc[0], comparison=rows,
               joint_front=allrec[allrec.joint_front][["searcher", "target", "qr", "flop_ratio", "delta", "cost"]]
               .sort_values("cost").to_dict("records"))
    (ROOT / "benchmarks" / "results" / "hw_search.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"recorded in {ROOT / 'benchmarks' / 'results' / 'hw_search.json'}")


if __name__ == "__main__":
    main()
