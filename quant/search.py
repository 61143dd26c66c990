"""Mixed-precision search for a target quantization ratio Q_r (seed 000's Equation 1).

A :class:`SearchSpace` has *units* that are low or high precision together: each matmul op
(``matmul`` granularity, the attention ``qk``/``av`` included) or each decoder layer (``layer``);
at both granularities the lm_head and each untied embedding table (weight-only) are units of
their own (a tied table belongs to the lm_head's unit).
A mask over the units is a precision map (low units get ``low`` formats, everything else ``high``)
with Q_r = low-precision parameters / all parameters of the model, as seed 000 defines it
(:func:`quant.precision.quant_ratio`: embeddings and norms count in the total and stay high, the
lm_head is a unit of its own, routers stay high). Searchers, one interface (:data:`SEARCHERS`):

* ``random`` — seed 000: each trial draws a random order of the parameter-carrying units and fills
  them up to the target (parameter-free ``qk``/``av`` units are low with probability Q_r);
* ``hw-greedy`` — hardware-aware (:mod:`quant.hwsearch`): the least perplexity under a cost budget
  (latency or energy of the map on a device, the cost model's), sensitivity per unit of cost
  saved (:func:`hw_greedy_search`); its targets are cost budgets, not ratios;
* ``greedy`` — sensitivity-guided: one unquantized forward and backward pass on calibration text
  estimates each op's loss increase when it alone is low (the Fisher estimate ``loss`` of
  :func:`quant.evaluate.op_sensitivity`: it sees where an op sits, so the lm_head, whose error goes
  straight into the logits, is not mistaken for a cheap unit). Units are filled cheapest loss per
  parameter first without overshooting the target by more than :attr:`SearchSpace.tolerance`
  (a unit too large to fit is skipped, and a fill with it forced in is tried as well); the
  remaining budget evaluates swaps (a low unit back to high, a high unit down, Q_r kept within the
  tolerance) in order of predicted loss reduction, keeping a swap only if perplexity improves.

Every record and result carries Q_r (parameters) and ``flop_ratio``, the FLOP-weighted ratio: matmul
FLOPs of a prefill of the evaluation window (``tokens``) whose operands are low precision, over all
matmul FLOPs (the attention ``qk``/``av`` matmuls included: they hold no parameters, so they move
only this ratio).

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
from workloads.optable import MATMUL_ROLES, counts, op_names, total_params

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
    unit_flops: np.ndarray      # matmul FLOPs of each unit in a prefill of ``tokens`` tokens
    total_flops: float          # all matmul FLOPs of that prefill (units or not)
    tolerance: float            # how far a guided map's Q_r may lie from its target (largest non-head unit)

    @classmethod
    def build(cls, table: pd.DataFrame, granularity: str, low: OpFormats, high: OpFormats, kv: Format,
              attention: bool = True, tokens: int = 128) -> "SearchSpace":
        """``attention=False`` holds the parameter-free ``qk``/``av`` matmuls high (not search units);
        ``tokens``: the prefill length the FLOP-weighted ratio is taken at (the evaluation window)."""
        if granularity not in GRANULARITIES:
            raise InputError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
        params: dict[str, float] = {}
        layer_of: dict[str, int] = {}
        heads: list[str] = []
        total = total_params(table)  # seed 000: Q_r is relative to all parameters of the model
        tied = bool(((table.role == "lm_head") & (table.params == 0)).any())
        for row in table.itertuples():
            if row.role == "embed":  # an untied table is a unit of its own (a tied one is the lm_head's)
                if not tied or row.name != table[table.role == "embed"].name.iloc[0]:
                    params[row.name] = float(row.params)
                    heads.append(row.name)
                continue
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
        c = counts(table, 1, tokens, 0)
        flops: dict[str, float] = {}
        for j, row in enumerate(c.itertuples()):
            if row.role in MATMUL_ROLES:
                for n in op_names(c.iloc[[j]], roles=(row.role,)):
                    flops[n] = float(row.flops) / max(row.row_experts, 1)
        uf = np.array([sum(flops.get(n, 0.0) for n in u) for u in units])
        share = up / total
        body = [share[i] for i, u in enumerate(units) if not set(u) & set(heads)]
        return cls(granularity, units, up, total, low, high, kv, uf, float(sum(flops.values())),
                   float(max(body, default=share.max(initial=0.0))))

    def qr(self, mask: np.ndarray) -> float:
        return float(self.unit_params[mask].sum() / self.total_params)

    def flop_ratio(self, mask: np.ndarray) -> float:
        """Low-precision matmul FLOPs / all matmul FLOPs of the reference prefill."""
        return float(self.unit_flops[mask].sum() / self.total_flops) if self.total_flops else 0.0

    def guided_fills(self, order, target: float) -> list[np.ndarray]:
        """Masks filled in ``order`` (parameter-carrying units) up to ``target`` without exceeding it
        by more than :attr:`tolerance`: the plain fill (a unit too large to fit is skipped, so it may
        end below the target, as random search's fills do when a large unit would overshoot), then one
        fill per skipped large unit with that unit forced in first, kept if its Q_r lies within the
        tolerance of the target."""
        share = self.unit_params / self.total_params
        order = [int(i) for i in order if share[i] > 0]

        def fill(first):
            mask, acc = np.zeros(len(self.units), bool), 0.0
            for i in first + [i for i in order if i not in first]:
                if acc + share[i] <= target + self.tolerance:
                    mask[i] = True
                    acc += share[i]
            return mask

        plain = fill([])
        out = [plain]
        for i in order:
            if not plain[i] and share[i] > self.tolerance:
                m = fill([i])
                if abs(self.qr(m) - target) <= self.tolerance and not any((m == o).all() for o in out):
                    out.append(m)
        return out

    def to_map(self, mask: np.ndarray, name: str = "search") -> PrecisionMap:
        ops = {n: self.low for u, m in zip(self.units, mask) if m for n in u}
        return PrecisionMap(name=name, default=self.high, kv_cache=self.kv, ops=ops)

    def fill(self, order, target: float) -> np.ndarray:
        """Take units in ``order`` while that brings Q_r closer to ``target`` (parameter-carrying only):
        seed 000's random-search fill."""
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
            rec = dict(signature=sig, qr=self.space.qr(mask), flop_ratio=self.space.flop_ratio(mask), seconds=time.perf_counter() - t0, **res, **tags)
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
    if "loss" not in sensitivity:
        raise InputError("the greedy searcher needs the loss column of quant.evaluate.op_sensitivity")
    loss = dict(zip(sensitivity.op, sensitivity["loss"].fillna(0.0)))
    unit_loss = np.array([sum(loss.get(n, 0.0) for n in u) for u in space.units])
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(space.unit_params > 0, unit_loss / np.maximum(space.unit_params, 1), np.inf)
    t = _Trials(objective, "greedy", target, progress)
    for m in space.guided_fills(np.argsort(cost, kind="stable"), target)[:budget]:
        t(m)
    while len(t.history) < budget:
        move = _best_swap(space, t.mask, unit_loss, target, space.tolerance, t.tried)
        if move is None:
            break
        t(move)
    return t.result()


class _Trials:
    """A guided searcher's evaluations: the best record and its mask so far, the best delta after each
    evaluation, and the masks tried."""

    def __init__(self, objective: "Objective", searcher: str, target: float, progress=None):
        self.objective, self.searcher, self.target, self.progress = objective, searcher, target, progress
        self.best, self.mask, self.history, self.tried = None, None, [], set()

    def __call__(self, m: np.ndarray) -> None:
        self.tried.add(SearchSpace.signature(m))
        rec = self.objective(m, searcher=self.searcher, target=self.target, trial=len(self.history))
        if self.best is None or rec["delta"] < self.best["delta"]:
            self.best, self.mask = rec, m
        self.history.append(self.best["delta"])
        if self.progress:
            self.progress(self.best["delta"])

    def result(self) -> "Result":
        return Result(self.searcher, self.target, self.mask, self.best, len(self.history), self.history)


def _best_swap(space: SearchSpace, mask: np.ndarray, unit_noise: np.ndarray, target: float, tol: float,
               tried: set) -> np.ndarray | None:
    """The untried swap (one low unit back to high, one high unit down to low) that keeps Q_r within
    ``tol`` of the target (or no further from it than ``mask``) and promises the largest drop of the
    summed loss estimate."""
    lows = np.nonzero(mask & (space.unit_params > 0))[0]
    highs = np.nonzero(~mask & (space.unit_params > 0))[0]
    if not len(lows) or not len(highs):
        return None
    qr = space.qr(mask)
    dq = (space.unit_params[highs][None, :] - space.unit_params[lows][:, None]) / space.total_params
    gain = unit_noise[lows][:, None] - unit_noise[highs][None, :]
    # within ``tol`` of the target, or at least no further from it than the current map
    gain = np.where(np.abs(qr + dq - target) <= max(tol, abs(qr - target) + 1e-12), gain, -np.inf)
    for flat in np.argsort(-gain, axis=None, kind="stable"):
        a, b = np.unravel_index(flat, gain.shape)
        if not np.isfinite(gain[a, b]):
            return None
        trial = mask.copy()
        trial[lows[a]], trial[highs[b]] = False, True
        if SearchSpace.signature(trial) not in tried:
            return trial
    return None


#: hw-greedy: candidate moves priced exactly per step (in order of predicted loss reduction)
MOVES_PRICED = 64


def hw_greedy_search(space: SearchSpace, target: float, objective: Objective, budget: int, sensitivity: pd.DataFrame,
                     progress=None, gain: np.ndarray | None = None, price=None, groups=None, **_) -> Result:
    """Hardware-aware: the least perplexity under a *cost budget* ``target`` on a device
    (:mod:`quant.hwsearch`: ``price(mask)`` is the map's exact cost, ``gain`` what each move saves).
    A move is a group of units the engine runs as one GEMM (``groups``: q/k/v, gate/up of a layer,
    else one unit each: :meth:`quant.hwsearch.MapCost.merge_groups`), so a map never pays for a
    merged GEMM split in two formats unless the exact cost says it helps. Groups go low cheapest
    accuracy per unit of cost saved first (the Fisher loss estimate over the saving; parameter-free
    attention matmuls included: they cost time too) until the exact cost is within the budget; the
    remaining trials try moves in order of predicted loss reduction that keep the cost within budget
    (a low group back to high, or a low and a high group exchanged), kept only if perplexity
    improves. Q_r is whatever the budget needs."""
    if gain is None or price is None:
        raise InputError("the hw-greedy searcher needs a device to price maps on (--device)")
    if "loss" not in sensitivity:
        raise InputError("the hw-greedy searcher needs the loss column of quant.evaluate.op_sensitivity")
    n = len(space.units)
    groups = [list(g) for g in groups] if groups is not None else [[i] for i in range(n)]
    member = np.zeros((len(groups), n), bool)
    for g, idx in enumerate(groups):
        member[g, idx] = True

    def units(gm: np.ndarray) -> np.ndarray:  # group mask -> unit mask
        return member[gm].any(axis=0) if gm.any() else np.zeros(n, bool)

    loss = dict(zip(sensitivity.op, sensitivity["loss"].fillna(0.0)))
    unit_loss = np.array([sum(loss.get(nm, 0.0) for nm in u) for u in space.units])
    g_loss = member.astype(float) @ unit_loss
    gain = np.asarray(gain, float)
    if len(gain) != len(groups):
        raise ValueError(f"{len(gain)} gains for {len(groups)} groups")
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(gain > 0, g_loss / np.maximum(gain, 1e-30), np.inf)
    order = [int(i) for i in np.argsort(per, kind="stable") if np.isfinite(per[i])]
    floor = np.zeros(len(groups), bool)
    floor[order] = True
    if price(units(floor)) > target:
        raise InputError(f"cost budget {target:g} is below what this map space reaches on the device "
                         f"({price(units(floor)):.4g} with every unit that saves cost low)")
    gm = np.zeros(len(groups), bool)
    pred = price(units(gm))
    for i in order:  # predicted (additive) fill, then exact
        if pred <= target:
            break
        gm[i] = True
        pred -= gain[i]
    rest = [i for i in order if not gm[i]]
    while price(units(gm)) > target and rest:
        gm[rest.pop(0)] = True
    t = _Trials(objective, "hw-greedy", target, progress)
    t(units(gm))
    cur_g = gm
    while len(t.history) < budget:
        cur = units(cur_g)
        c0 = price(cur)
        lows, highs = np.nonzero(cur_g & (gain > 0))[0], np.nonzero(~cur_g & (gain > 0))[0]
        moves = [(-g_loss[i], (i,), ()) for i in lows if c0 + gain[i] <= target]          # back to high
        if len(lows) and len(highs):
            d = g_loss[highs][None, :] - g_loss[lows][:, None]                             # predicted change
            ok = c0 + gain[lows][:, None] - gain[highs][None, :] <= target
            for a, b2 in zip(*np.nonzero(ok & (d < 0))):
                moves.append((d[a, b2], (lows[a],), (highs[b2],)))
        moves.sort(key=lambda t: t[0])
        nxt = None
        for _, up, down in moves[:MOVES_PRICED]:  # each exact price is a latency call: the most promising only
            m = cur_g.copy()
            m[list(up)] = False
            m[list(down)] = True
            mu = units(m)
            if SearchSpace.signature(mu) not in t.tried and price(mu) <= target:
                nxt = m
                break
            t.tried.add(SearchSpace.signature(mu))
        if nxt is None:
            break
        t(units(nxt))
        if t.mask is not None and SearchSpace.signature(t.mask) == SearchSpace.signature(units(nxt)):
            cur_g = nxt
    return t.result()


SEARCHERS = {"random": random_search, "greedy": greedy_search, "hw-greedy": hw_greedy_search}


def uniform_map(f: OpFormats, name: str = "low") -> PrecisionMap:
    """Every matmul (linear, attention, the lm_head) and embedding table in ``f`` (tables weight-only):
    what the sensitivity analysis measures."""
    return PrecisionMap(name=name, roles={"linear": f, "attention": f, "lm_head": f, "embed": f})


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
        raise InputError("give at least one target (--ratio, or --cost-budget for hw-greedy)")
    if searcher == "hw-greedy":
        bad = [r for r in ratios if not r > 0]
        if bad:
            raise InputError(f"cost budgets must be > 0, got {bad[0]}")
    else:
        bad = [r for r in ratios if not 0.0 <= r <= 1.0]
        if bad:
            raise InputError(f"quantization ratio must be in [0, 1], got {bad[0]}")
    if budget <= 0:
        raise InputError(f"trials must be > 0, got {budget}")


def _pricer(cost, space: SearchSpace):
    def price(mask: np.ndarray) -> float:
        return cost(space.to_map(mask))

    return price


def unpack_mask(signature: str) -> np.ndarray:
    """The mask a :meth:`SearchSpace.signature` encodes."""
    hexbits, n = signature.rsplit(":", 1)
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexbits), np.uint8))[: int(n)].astype(bool)


def run_search(fq, evaluator, granularity: str, low: OpFormats, high: OpFormats, kv: Format, ratios,
               searcher: str, budget: int, out_dir, settings: dict, seed: int = 0, calibration=None,
               progress_factory=None, cost=None) -> pd.DataFrame:
    """Search every target ratio; journal in ``out_dir/journal.jsonl``, the best map per ratio in
    ``out_dir/map_qr<ratio>.json``, the table in ``out_dir/results.csv`` (also returned).

    ``calibration``: token windows for the greedy searchers' sensitivity pass, from a text other
    than the evaluation text (required for ``greedy`` and ``hw-greedy``). ``progress_factory(total, label)`` returns a callback taking the best delta.
    ``cost`` (:class:`quant.hwsearch.MapCost`): prices every evaluated map on a device; the
    ``hw-greedy`` searcher needs it; ``out_dir/front.csv`` then holds every map the journal has with
    its cost and whether it is on the accuracy/cost Pareto front, and the table a ``cost`` column.
    """
    check_search_args(granularity, ratios, searcher, budget)
    out = Path(out_dir)
    space = SearchSpace.build(fq.table, granularity, low, high, kv, tokens=int(settings.get("window_len", 128)))
    # the trial budget is not part of the identity: a finished search can be grown with more trials
    journal = Journal(out / "journal.jsonl", dict(settings, granularity=granularity, low=low.to_json(),
                                                  high=high.to_json(), kv=kv.name, searcher=searcher, seed=seed))
    objective = Objective(space, evaluator, journal)
    sensitivity, gain, price, groups = None, None, None, None
    if searcher == "hw-greedy":
        if cost is None:
            raise InputError("the hw-greedy searcher needs a device to price maps on (--device)")
        groups = cost.merge_groups(space)
        gain = cost.unit_gains(space, groups)
        price = _pricer(cost, space)
    if searcher in ("greedy", "hw-greedy"):
        from quant.evaluate import op_sensitivity

        if calibration is None:
            raise InputError("the greedy searcher needs calibration windows from a text other than the evaluation "
                             "text (its sensitivity pass must not see the evaluation tokens)")
        windows = calibration
        key = tensor_key("fisher-v2", json.dumps(journal.settings, sort_keys=True), windows)
        sensitivity = pd.DataFrame(cached_value(out / "sensitivity.json", key,
                                                lambda: op_sensitivity(fq, windows, uniform_map(low)).to_dict("list")))
    rows, masks = [], []
    by_cost = searcher == "hw-greedy"  # its targets are cost budgets, not ratios
    for target in ratios:
        tag = f"cost{target:g}" if by_cost else f"qr{target:g}"
        cb = progress_factory(budget, f"cost <= {target:g}" if by_cost else f"Q_r {target:g}") if progress_factory else None
        res = SEARCHERS[searcher](space, target, objective, budget, seed=seed, sensitivity=sensitivity, progress=cb,
                                  gain=gain, price=price, groups=groups)
        if cb is not None and hasattr(cb, "close"):
            cb.close()
        pmap = space.to_map(res.best_mask, name=f"{searcher}-{tag}")
        masks.append(res.best_mask)
        pmap.save(out / f"map_{tag}.json")
        rows.append(dict(target_qr=float("nan") if by_cost else target,
                         **({"target_cost": target} if by_cost else {}), qr=res.best["qr"], flop_ratio=space.flop_ratio(res.best_mask), ppl=res.best["ppl"], ref_ppl=res.best["ref_ppl"],
                         delta=res.best["delta"], evaluations=res.evaluations, searcher=searcher,
                         granularity=granularity, map=str(out / f"map_{tag}.json"),
                         model=fq.spec.name, params=total_params(fq.table), low_weight=low.weight.name,
                         low_act=low.act.name, block=low.weight.block))
    df = pd.DataFrame(rows)
    if cost is not None:
        recs = pd.DataFrame(list(journal.records.values()))
        recs["cost"] = cost.costs([space.to_map(unpack_mask(sig)) for sig in recs.signature])
        from quant.hwsearch import front

        recs["on_front"] = front(recs)
        recs["cost_metric"] = cost.label
        recs.sort_values(["cost", "delta"]).to_csv(out / "front.csv", index=False)
        by_sig = dict(zip(recs.signature, recs.cost))
        df["cost"] = [by_sig[space.signature(m)] for m in masks]
        df["cost_metric"] = cost.label
    df.to_csv(out / "results.csv", index=False)
    df.attrs["new_evaluations"] = objective.new_evaluations
    return df
