"""Mixed-precision search for a target quantization ratio Q_r (seed 000's Equation 1).

A :class:`SearchSpace` has *units* that are low or high precision together: each matmul op
(``matmul`` granularity, the attention ``qk``/``av`` included) or each decoder layer (``layer``).
A mask over the units is a precision map (low units get ``low`` formats, everything else ``high``)
with Q_r = low-precision parameters / all parameters of the model, as seed 000 defines it
(:func:`quant.precision.quant_ratio`: embeddings and norms count in the total and stay high, the
lm_head is a unit of its own, routers stay high). Searchers, one interface (:data:`SEARCHERS`):

* ``random`` — seed 000: each trial draws a random order of the parameter-carrying units and fills
  them up to the target (parameter-free ``qk``/``av`` units are low with probability Q_r);
* ``greedy`` — sensitivity-guided: one unquantized forward pass measures each op's output noise
  when it alone is low (:func:`quant.evaluate.op_sensitivity`); units are filled cheapest noise per
  parameter first, then the remaining budget evaluates swaps (a low unit back to high, a high unit
  down, Q_r kept within half a unit of the target) in order of predicted noise reduction, keeping a
  swap only if perplexity improves.

Every evaluation is journalled (JSON lines) under the output folder, keyed by the mask: a killed
search re-run with the same settings replays its trials from the journal, evaluates only what is
new, and ends with the same result.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mpqsim import InputError
from mpqsim.journal import Journal as _Journal
from quant.formats import Format
from quant.precision import OpFormats, PrecisionMap
from workloads.optable import op_names, total_params

GRANULARITIES = ("matmul", "layer")


@dataclass
class SearchSpace:
    """Units of a model's matmul ops and their parameters (see the module docstring)."""

    granularity: str
    units: list[tuple[str, ...]]
    unit_params: np.ndarray
    total_params: float
    low: OpFormats
    high: OpFormats
    kv: Format

    @classmethod
    def build(cls, table: pd.DataFrame, granularity: str, low: OpFormats, high: OpFormats, kv: Format,
              attention: bool = True) -> "SearchSpace":
        """``attention=False`` holds the parameter-free ``qk``/``av`` matmuls high (not search units)."""
        if granularity not in GRANULARITIES:
            raise InputError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
        params: dict[str, float] = {}
        layer_of: dict[str, int] = {}
        heads: list[str] = []
        total = total_params(table)  # seed 000: Q_r is relative to all parameters of the model
        for row in table.itertuples():
            if row.role not in ("linear", "attention", "lm_head") or (row.role == "attention" and not attention):
                continue
            names = op_names(table.loc[[row.Index]], roles=(row.role,))
            if row.role == "lm_head":  # a unit of its own; a tied table's parameters count once, here
                for n in names:
                    params[n] = float(row.params or row.w_elems)
                    heads.append(n)
                continue
            for n, i in zip(names, [i for i in row.layers for _ in (row.expert_ids or (None,))]):
                params[n] = float(row.params)
                layer_of[n] = i
        if granularity == "matmul":
            units = [(n,) for n in params]
        else:
            by_layer: dict[int, list[str]] = {}
            for n, i in layer_of.items():
                by_layer.setdefault(i, []).append(n)
            units = [tuple(v) for _, v in sorted(by_layer.items())] + [(n,) for n in heads]
        up = np.array([sum(params[n] for n in u) for u in units])
        return cls(granularity, units, up, total, low, high, kv)

    def qr(self, mask: np.ndarray) -> float:
        return float(self.unit_params[mask].sum() / self.total_params)

    def to_map(self, mask: np.ndarray, name: str = "search") -> PrecisionMap:
        ops = {n: self.low for u, m in zip(self.units, mask) if m for n in u}
        return PrecisionMap(name=name, default=self.high, kv_cache=self.kv, ops=ops)

    def fill(self, order, target: float) -> np.ndarray:
        """Take units in ``order`` while that brings Q_r closer to ``target`` (parameter-carrying only)."""
        mask = np.zeros(len(self.units), bool)
        acc = 0.0
        for i in order:
            p = self.unit_params[i] / self.total_params
            if p > 0 and abs(acc + p - target) < abs(acc - target):
                mask[i] = True
                acc += p
        return mask

    def random_mask(self, target: float, rng: np.random.Generator) -> np.ndarray:
        mask = self.fill(rng.permutation(len(self.units)), target)
        free = self.unit_params == 0
        mask[free] = rng.random(int(free.sum())) < target
        return mask

    @staticmethod
    def signature(mask: np.ndarray) -> str:
        return np.packbits(mask.astype(np.uint8)).tobytes().hex() + f":{len(mask)}"


class Journal(_Journal):
    """JSON-lines record of every evaluation, keyed by mask signature (:class:`mpqsim.journal.Journal`)."""

    def __init__(self, path: Path, settings: dict):
        super().__init__(path, settings, key="signature", what="search")


@dataclass
class Objective:
    """Evaluate masks through an evaluator, with the journal as a cache; counts new evaluations."""

    space: SearchSpace
    evaluate: Callable[[PrecisionMap], dict]
    journal: Journal
    new_evaluations: int = 0

    def __call__(self, mask: np.ndarray, **tags) -> dict:
        sig = SearchSpace.signature(mask)
        rec = self.journal.records.get(sig)
        if rec is None:
            t0 = time.perf_counter()
            res = self.evaluate(self.space.to_map(mask))
            rec = dict(signature=sig, qr=self.space.qr(mask), seconds=time.perf_counter() - t0, **res, **tags)
            self.journal.add(rec)
            self.new_evaluations += 1
        return rec


@dataclass
class Result:
    searcher: str
    target: float
    best_mask: np.ndarray
    best: dict
    evaluations: int
    history: list[float]   # best delta after each evaluation


def random_search(space: SearchSpace, target: float, objective: Objective, budget: int, seed: int = 0,
                  progress=None, **_) -> Result:
    best, best_mask, history = None, None, []
    for t in range(budget):
        rng = np.random.default_rng([seed, int(round(target * 1e6)), t])
        mask = space.random_mask(target, rng)
        rec = objective(mask, searcher="random", target=target, trial=t)
        if best is None or rec["delta"] < best["delta"]:
            best, best_mask = rec, mask
        history.append(best["delta"])
        if progress:
            progress(best["delta"])
    return Result("random", target, best_mask, best, budget, history)


def greedy_search(space: SearchSpace, target: float, objective: Objective, budget: int, sensitivity: pd.DataFrame,
                  progress=None, **_) -> Result:
    noise = dict(zip(sensitivity.op, sensitivity.noise))
    unit_noise = np.array([sum(noise.get(n, 0.0) for n in u) for u in space.units])
    with np.errstate(divide="ignore"):
        cost = np.where(space.unit_params > 0, unit_noise / np.maximum(space.unit_params, 1), np.inf)
    mask = space.fill(np.argsort(cost, kind="stable"), target)
    best = objective(mask, searcher="greedy", target=target, trial=0)
    history = [best["delta"]]
    if progress:
        progress(best["delta"])
    tol = 0.5 * max(space.unit_params.max() / space.total_params, 1e-9)
    tried: set[str] = {SearchSpace.signature(mask)}
    evaluations = 1
    while evaluations < budget:
        move = _best_swap(space, mask, unit_noise, target, tol, tried)
        if move is None:
            break
        tried.add(SearchSpace.signature(move))
        rec = objective(move, searcher="greedy", target=target, trial=evaluations)
        evaluations += 1
        if rec["delta"] < best["delta"]:
            best, mask = rec, move
        history.append(best["delta"])
        if progress:
            progress(best["delta"])
    return Result("greedy", target, mask, best, evaluations, history)


def _best_swap(space: SearchSpace, mask: np.ndarray, unit_noise: np.ndarray, target: float, tol: float,
               tried: set) -> np.ndarray | None:
    """The untried swap (one low unit back to high, one high unit down to low) that keeps Q_r within
    ``tol`` of the target and promises the largest drop of the summed noise."""
    lows = np.nonzero(mask & (space.unit_params > 0))[0]
    highs = np.nonzero(~mask & (space.unit_params > 0))[0]
    if not len(lows) or not len(highs):
        return None
    qr = space.qr(mask)
    dq = (space.unit_params[highs][None, :] - space.unit_params[lows][:, None]) / space.total_params
    gain = unit_noise[lows][:, None] - unit_noise[highs][None, :]
    gain = np.where(np.abs(qr + dq - target) <= tol, gain, -np.inf)
    for flat in np.argsort(-gain, axis=None, kind="stable"):
        a, b = np.unravel_index(flat, gain.shape)
        if not np.isfinite(gain[a, b]):
            return None
        trial = mask.copy()
        trial[lows[a]], trial[highs[b]] = False, True
        if SearchSpace.signature(trial) not in tried:
            return trial
    return None


SEARCHERS = {"random": random_search, "greedy": greedy_search}


def uniform_map(f: OpFormats, name: str = "low") -> PrecisionMap:
    """Every matmul (linear and attention) in ``f``: what the sensitivity analysis measures."""
    return PrecisionMap(name=name, roles={"linear": f, "attention": f})


def model_fingerprint(model) -> str:
    """Identity of a loaded model that survives moving its files: its config and a sample of every
    parameter's values (first 1,024 elements), hashed."""
    import hashlib

    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().flatten()[:1024].float().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def tensor_key(*parts) -> str:
    """A hash of strings, numbers and tensors/arrays (their bytes): a key for cached results."""
    import hashlib

    h = hashlib.sha256()
    for p in parts:
        if hasattr(p, "detach"):
            p = p.detach().cpu().numpy()
        h.update(np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()[:24]


def cached_value(path: Path, key: str, compute):
    """``compute()`` once per ``key``, kept in the JSON file ``path`` (written atomically): a
    finished or resumed search skips its reference perplexity and sensitivity pass."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = {}  # a damaged cache only costs the recomputation
    if not isinstance(doc, dict):
        doc = {}
    if key in doc:
        return doc[key]
    val = compute()
    doc[key] = val
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)
    return val


def resume_identity(model, text, windows: int, window_len: int, weight_only: bool, calibration) -> dict:
    """What must match for a search to resume from an existing journal (besides the formats,
    granularity, searcher and seed, which :func:`run_search` adds): the model (its
    :func:`model_fingerprint`, or any stable identity), the evaluation text and windows, weight-only
    or not, and the calibration text. The number of trials is not part of it."""
    return dict(model=str(model), text=str(text), windows=int(windows), window_len=int(window_len),
                weight_only=bool(weight_only), calibration=str(calibration))


def check_search_args(granularity: str, ratios, searcher: str, budget: int) -> None:
    """Raise :class:`InputError` for arguments a search cannot run with (cheap; before any model load)."""
    if granularity not in GRANULARITIES:
        raise InputError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    if searcher not in SEARCHERS:
        raise InputError(f"unknown searcher {searcher!r}; valid: {', '.join(SEARCHERS)}")
    if not ratios:
        raise InputError("give at least one target quantization ratio")
    bad = [r for r in ratios if not 0.0 <= r <= 1.0]
    if bad:
        raise InputError(f"quantization ratio must be in [0, 1], got {bad[0]}")
    if budget <= 0:
        raise InputError(f"trials must be > 0, got {budget}")


def run_search(fq, evaluator, granularity: str, low: OpFormats, high: OpFormats, kv: Format, ratios,
               searcher: str, budget: int, out_dir, settings: dict, seed: int = 0, calibration=None,
               progress_factory=None) -> pd.DataFrame:
    """Search every target ratio; journal in ``out_dir/journal.jsonl``, the best map per ratio in
    ``out_dir/map_qr<ratio>.json``, the table in ``out_dir/results.csv`` (also returned).

    ``calibration``: token windows for the greedy searcher's sensitivity pass, from a text other
    than the evaluation text (required for ``greedy``). ``progress_factory(total, label)`` returns a callback taking the best delta.
    """
    check_search_args(granularity, ratios, searcher, budget)
    out = Path(out_dir)
    space = SearchSpace.build(fq.table, granularity, low, high, kv)
    # the trial budget is not part of the identity: a finished search can be grown with more trials
    journal = Journal(out / "journal.jsonl", dict(settings, granularity=granularity, low=low.to_json(),
                                                  high=high.to_json(), kv=kv.name, searcher=searcher, seed=seed))
    objective = Objective(space, evaluator, journal)
    sensitivity = None
    if searcher == "greedy":
        from quant.evaluate import op_sensitivity

        if calibration is None:
            raise InputError("the greedy searcher needs calibration windows from a text other than the evaluation "
                             "text (its sensitivity pass must not see the evaluation tokens)")
        windows = calibration
        key = tensor_key(json.dumps(journal.settings, sort_keys=True), windows)
        sensitivity = pd.DataFrame(cached_value(out / "sensitivity.json", key,
                                                lambda: op_sensitivity(fq, windows, uniform_map(low)).to_dict("list")))
    rows = []
    for target in ratios:
        cb = progress_factory(budget, f"Q_r {target:g}") if progress_factory else None
        res = SEARCHERS[searcher](space, target, objective, budget, seed=seed, sensitivity=sensitivity, progress=cb)
        if cb is not None and hasattr(cb, "close"):
            cb.close()
        pmap = space.to_map(res.best_mask, name=f"{searcher}-qr{target:g}")
        pmap.save(out / f"map_qr{target:g}.json")
        rows.append(dict(target_qr=target, qr=res.best["qr"], ppl=res.best["ppl"], ref_ppl=res.best["ref_ppl"],
                         delta=res.best["delta"], evaluations=res.evaluations, searcher=searcher,
                         granularity=granularity, map=str(out / f"map_qr{target:g}.json")))
    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    df.attrs["new_evaluations"] = objective.new_evaluations
    return df
