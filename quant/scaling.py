"""Scaling laws of mixed-precision quantization (seed 000) and of bits (seed 004), fitted with intervals.

* **Law 1** (seed 000, section 4.2): under a loss budget (delta perplexity <= L_max), the model
  size (billions of parameters) that tolerates a maximum quantization ratio ``Q_r`` is
  ``size = exp(k * (1 - Q_r) + c)``: the high-precision share a model needs falls
  exponentially as it grows (published, Qwen-1.5 at matmul granularity: k = -11.68, c = 4.83 at
  5 %; -11.27 / 3.35 at 10 %; -12.84 / 1.86 at 20 %). :func:`fit_law1` fits k and c (least squares
  on log size) with bootstrap intervals; :func:`predict_max_qr` inverts it for a model size, with
  its interval, for sizing.
* **Law 2** (section 4.3): delta perplexity against the block size of the low format,
  ``delta = A * block^k`` per ratio (7B: q = 0.5: A = 0.53, k = 0.32; 0.9: 1.65 / 0.62; 0.95: 3.57 /
  0.61): :func:`fit_law2`.
* **Bits** (seed 004): perplexity against total model bits across precisions and sizes; the
  Pareto frontier (:func:`bit_frontier`) and the bit-width that is optimal at a bit budget.

:func:`max_qr_under_budget` reads the largest ratio a model reaches under a budget from search
results (``quant search``'s ``results.csv``: ``qr``, ``delta``, ``params``), interpolating between
searched ratios. ``mpqsim quant fit RESULTS... -o out/`` runs it all and writes the fits.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mpqsim import InputError

#: seed 000's published fits (for reference and for the synthetic-data test)
PUBLISHED_LAW1 = {0.05: (-11.68, 4.83), 0.10: (-11.27, 3.35), 0.20: (-12.84, 1.86)}
PUBLISHED_LAW2_7B = {0.5: (0.53, 0.32), 0.9: (1.65, 0.62), 0.95: (3.57, 0.61)}


@dataclass(frozen=True)
class Fit:
    """A fitted law: parameters, their bootstrap intervals, and the data it saw."""

    law: str
    params: dict                 # name -> value
    intervals: dict              # name -> (low, high) at ``level``
    level: float
    n: int
    rmse_log: float              # RMS residual on the log scale the fit minimises
    meta: dict = field(default_factory=dict)
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)  # bootstrap draws (n_boot, params)

    def to_json(self) -> dict:
        """The fit as JSON, its bootstrap draws included (so a prediction read back from the file
        keeps the joint interval of k and c, not just each one's)."""
        d = asdict(self)
        d["samples"] = None if self.samples is None else np.round(self.samples, 6).tolist()
        return d


def _linfit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares y = a x + b."""
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def _bootstrap(x, y, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, 2) resampled line fits; empty below 3 points (two points always give the same line:
    no interval can be had from them)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    if n < 3:
        return np.empty((0, 2))
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if np.ptp(x[idx]) == 0:  # a resample with one distinct x fits nothing
            continue
        out.append(_linfit(x[idx], y[idx]))
    return np.array(out)


def _check_points(x, y, what: str, positive_y: bool = True):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"{what}: need two equal-length lists of numbers")
    if len(x) < 2 or np.ptp(x) == 0:
        raise InputError(f"{what}: need at least two points with different x to fit a line (got {len(x)})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (positive_y and (y <= 0).any()):
        raise InputError(f"{what}: values must be finite{' and > 0' if positive_y else ''}")
    return x, y


def fit_law1(size_b, qr_max, budget: float, n_boot: int = 2000, level: float = 0.9, seed: int = 0) -> Fit:
    """Law 1 at one budget: ``size_b`` (billions of parameters) vs the maximum ``Q_r`` reached."""
    qr = np.asarray(qr_max, float)
    if ((qr < 0) | (qr > 1)).any():
        raise InputError("Law 1: maximum quantization ratios must lie in [0, 1]")
    x, y = _check_points(1 - qr, size_b, "Law 1 (model size vs maximum Q_r)")
    k, c = _linfit(x, np.log(y))
    boot = _bootstrap(x, np.log(y), n_boot, seed)
    res = np.log(y) - (k * x + c)
    return Fit("law1", dict(k=k, c=c), dict(k=_interval(boot[:, 0], level), c=_interval(boot[:, 1], level)),
               level, len(x), float(np.sqrt(np.mean(res ** 2))), dict(budget=budget), boot)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    if len(draws) == 0:
        return (float("nan"), float("nan"))
    return tuple(float(v) for v in np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2]))


def predict_max_qr(fit: Fit, size_b, level: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q_r, low, high): the maximum quantization ratio Law 1 predicts for ``size_b`` billion
    parameters, with the interval of the bootstrap draws (clipped to [0, 1])."""
    if fit.law != "law1":
        raise InputError("predict_max_qr needs a Law 1 fit")
    size = np.atleast_1d(np.asarray(size_b, float))
    if (size <= 0).any():
        raise InputError("model size must be > 0 (billions of parameters)")
    k, c = fit.params["k"], fit.params["c"]
    qr = 1 - (np.log(size) - c) / k
    level = level or fit.level
    if fit.samples is None or not len(fit.samples):  # too few points for an interval
        nan = np.full_like(qr, np.nan)
        return np.clip(qr, 0, 1), nan, nan
    draws = 1 - (np.log(size)[None, :] - fit.samples[:, 1:2]) / fit.samples[:, 0:1]
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2], axis=0)
    return np.clip(qr, 0, 1), np.clip(lo, 0, 1), np.clip(hi, 0, 1)


def fit_law2(block, delta, q: float, n_boot: int = 2000, level: float = 0.9, seed: int = 0) -> Fit:
    """Law 2 at one ratio ``q``: delta perplexity = A * block^k (least squares in log-log)."""
    x, y = _check_points(block, delta, "Law 2 (delta perplexity vs block size)")
    if (x <= 0).any():
        raise InputError("Law 2: block sizes must be > 0")
    k, ln_a = _linfit(np.log(x), np.log(y))
    boot = _bootstrap(np.log(x), np.log(y), n_boot, seed)
    res = np.log(y) - (k * np.log(x) + ln_a)
    return Fit("law2", dict(A=float(np.exp(ln_a)), k=k),
               dict(A=tuple(float(np.exp(v)) for v in _interval(boot[:, 1], level)), k=_interval(boot[:, 0], level)),
               level, len(x), float(np.sqrt(np.mean(res ** 2))), dict(q=q), boot)


def max_qr_under_budget(qr, delta, budget: float) -> float:
    """The largest Q_r whose delta stays within ``budget``, interpolating linearly in Q_r between
    searched ratios (deltas taken as increasing in Q_r: the running maximum); 0 if none does."""
    qr, delta = np.asarray(qr, float), np.asarray(delta, float)
    order = np.argsort(qr)
    qr, delta = np.concatenate([[0.0], qr[order]]), np.concatenate([[0.0], np.maximum.accumulate(delta[order])])
    ok = delta <= budget
    if ok.all():
        return float(qr[-1])
    i = int(np.argmin(ok))  # first ratio over budget
    if i == 0:
        return 0.0
    q0, q1, d0, d1 = qr[i - 1], qr[i], delta[i - 1], delta[i]
    return float(q0 + (budget - d0) / (d1 - d0) * (q1 - q0)) if d1 > d0 else float(q0)


def bit_frontier(df: pd.DataFrame) -> pd.DataFrame:
    """Seed 004: rows of (``model``, ``bits_per_param``, ``params``, ``ppl``) -> ``total_bits`` and
    the Pareto frontier (no other point has fewer total bits and a lower perplexity), plus, per
    frontier point, whether its precision is the optimal bit-width at that budget."""
    need = {"model", "bits_per_param", "params", "ppl"}
    if not need <= set(df.columns):
        raise InputError(f"bit scaling needs columns {', '.join(sorted(need))}")
    d = df.assign(total_bits=df.params * df.bits_per_param).sort_values(["total_bits", "ppl"]).reset_index(drop=True)
    best = np.inf
    front = []
    for p in d.ppl:
        front.append(p < best)
        best = min(best, p)
    d["pareto"] = front
    return d


def optimal_bits(frontier: pd.DataFrame) -> float:
    """The precision (bits per parameter) that most often sits on the Pareto frontier (seed 004:
    4-bit for most families)."""
    f = frontier[frontier.pareto]
    if f.empty:
        raise InputError("no Pareto point")
    return float(f.bits_per_param.value_counts().idxmax())


# ---------------------------------------------------------------- from search results
def read_results(paths) -> pd.DataFrame:
    """``quant search`` results (``results.csv`` files or folders holding one) in one table."""
    frames = []
    for p in paths:
        p = Path(p)
        f = p / "results.csv" if p.is_dir() else p
        if not f.is_file():
            raise InputError(f"no results file at {p} (give quant search's results.csv or its folder)")
        d = pd.read_csv(f)
        missing = {"qr", "delta", "params", "model"} - set(d.columns)
        if missing:
            raise InputError(f"{f}: missing column(s) {', '.join(sorted(missing))} (re-run quant search to write them)")
        frames.append(d.assign(source=str(f)))
    if not frames:
        raise InputError("give at least one results file")
    return pd.concat(frames, ignore_index=True)


def fit_results(df: pd.DataFrame, budgets=(0.05, 0.10, 0.20), n_boot: int = 2000, seed: int = 0) -> dict:
    """Law 1 at each budget (one point per model: its maximum Q_r) and Law 2 per target ratio when
    the results hold several block sizes of one model."""
    out = {"law1": [], "law2": [], "points": []}
    for budget in budgets:
        pts = [dict(model=m, size_b=float(g.params.iloc[0]) / 1e9, budget=budget,
                    qr_max=max_qr_under_budget(g.qr, g.delta, budget)) for m, g in df.groupby("model")]
        out["points"] += pts
        sizes = [p["size_b"] for p in pts]
        if len(set(sizes)) >= 2 and len({p["qr_max"] for p in pts}) >= 2:
            out["law1"].append(fit_law1(sizes, [p["qr_max"] for p in pts], budget, n_boot=n_boot, seed=seed))
    if "block" in df.columns:
        for (model, q), g in df[df.block > 0].groupby(["model", "target_qr"]):
            if g.block.nunique() >= 2:
                f = fit_law2(g.block, g.delta.clip(lower=1e-6), q, n_boot=n_boot, seed=seed)
                out["law2"].append(replace(f, meta=dict(f.meta, model=model)))
    return out


def write_fits(fits: dict, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(law1=[f.to_json() for f in fits["law1"]], law2=[f.to_json() for f in fits["law2"]],
               points=fits["points"], published_law1={str(k): v for k, v in PUBLISHED_LAW1.items()})
    (out / "fits.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    pd.DataFrame(fits["points"]).to_csv(out / "law1_points.csv", index=False)
    return out / "fits.json"


__all__ = ["Fit", "fit_law1", "fit_law2", "predict_max_qr", "max_qr_under_budget", "bit_frontier", "optimal_bits",
           "read_results", "fit_results", "write_fits", "PUBLISHED_LAW1", "PUBLISHED_LAW2_7B"]
