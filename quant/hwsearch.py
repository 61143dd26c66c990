"""Hardware-aware precision search: the cost model on a chosen device inside ``quant search``.

A ratio-only search fills a target Q_r with the units that cost the least accuracy per
*parameter*; but parameters are not what a device pays for. :class:`MapCost` prices a precision map
on a device with :func:`sim.latency.latency_table` (one request: the prompt's prefill and
``output_tokens`` decode steps at ``batch``; ``metric`` ``latency`` in ms or ``energy`` in J per
output token), and :meth:`MapCost.unit_gains` what each search unit saves when it alone goes low
(all units in one vectorised call). The ``hw-greedy`` searcher is the greedy searcher with that
saving in place of the parameter count (cheapest accuracy per millisecond or joule first), so on a
device where, say, the lm_head's FLOPs or the attention matmuls dominate, it takes them first.

Every map a search evaluates (any searcher; the journal keeps them) gets its cost, and
:func:`front` marks the accuracy/cost Pareto front (delta perplexity vs cost, both minimised);
:func:`choose` picks the map with the least delta under a cost budget, or the cheapest under a
delta budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mpqsim import InputError, choices_hint
from mpqsim.pareto import pareto

METRICS = {"latency": "request latency on the device (ms): prefill of the prompt + output_tokens decode steps",
           "energy": "J per output token on the device (prefill share included)"}


@dataclass
class MapCost:
    """Prices precision maps of one model on one device (see the module docstring)."""

    spec: object
    device: object
    metric: str = "latency"
    batch: int = 1
    prompt: int = 128
    context: int = 256
    output_tokens: int = 128
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise InputError(f"unknown cost metric {self.metric!r}; {choices_hint(METRICS)}")

    def costs(self, pmaps) -> np.ndarray:
        from sim.latency import latency_table

        todo = [p for p in pmaps if _key(p) not in self._cache]
        if todo:
            df = latency_table(self.spec, [self.device], todo, [self.batch], self.prompt, self.context)
            out = self.output_tokens
            if self.metric == "latency":
                v = df.prefill_ms + out * df.decode_ms
            else:
                v = (df.prefill_j_per_token * self.prompt + df.decode_j_per_token * out) / out
            for p, x in zip(todo, v.to_numpy()):
                self._cache[_key(p)] = float(x)
        return np.array([self._cache[_key(p)] for p in pmaps])

    def __call__(self, pmap) -> float:
        return float(self.costs([pmap])[0])

    def unit_gains(self, space) -> np.ndarray:
        """Cost saved by each unit of ``space`` going low alone (the all-high map minus that map)."""
        base = space.to_map(np.zeros(len(space.units), bool), name="high")
        maps = []
        for i in range(len(space.units)):
            m = np.zeros(len(space.units), bool)
            m[i] = True
            maps.append(space.to_map(m, name=f"unit{i}"))
        c = self.costs([base] + maps)
        return np.maximum(c[0] - c[1:], 0.0)

    @property
    def label(self) -> str:
        unit = "ms" if self.metric == "latency" else "J/token"
        return (f"{self.metric} on {self.device.name} ({unit}; batch {self.batch}, prompt {self.prompt}, "
                f"{self.output_tokens} output tokens)")


def _key(pmap) -> tuple:
    return (pmap.default, pmap.kv_cache, tuple(sorted(pmap.roles.items())), tuple(sorted(pmap.ops.items())))


def front(records: pd.DataFrame, x: str = "cost", y: str = "delta") -> pd.Series:
    """True for records on the Pareto front of ``x`` and ``y`` (both minimised)."""
    return pareto(records, x, y)


def choose(records: pd.DataFrame, max_cost: float | None = None, max_delta: float | None = None) -> pd.Series | None:
    """The least-delta record with cost <= ``max_cost``, or the cheapest with delta <= ``max_delta``."""
    if (max_cost is None) == (max_delta is None):
        raise InputError("give one of --max-cost or --max-delta")
    if max_cost is not None:
        ok = records[records.cost <= max_cost]
        return None if ok.empty else ok.sort_values(["delta", "cost"]).iloc[0]
    ok = records[records.delta <= max_delta]
    return None if ok.empty else ok.sort_values(["cost", "delta"]).iloc[0]


__all__ = ["MapCost", "METRICS", "front", "choose"]
