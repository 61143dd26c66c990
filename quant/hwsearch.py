"""Hardware-aware precision search: the cost model on a chosen device inside ``quant search``.

A ratio-only search fills a target Q_r with the units that cost the least accuracy per
*parameter*; but parameters are not what a device pays for. :class:`MapCost` prices a precision map
on a device with :func:`sim.latency.latency_table` (one request: the prompt's prefill and
``output_tokens`` decode steps at ``batch``; ``metric`` ``latency`` in ms or ``energy`` in J per
output token), :meth:`MapCost.merge_groups` the units the engine runs as one GEMM (a layer's
q/k/v, gate/up) and :meth:`MapCost.unit_gains` what each group saves going low (alone, or among
the others: costs are not additive; all maps in one vectorised call). The ``hw-greedy`` searcher
is the greedy searcher over those groups with that saving in place of the parameter count
(cheapest accuracy per millisecond or joule first), so on a device where, say, the lm_head's FLOPs
or the attention matmuls dominate, it takes them first, and it never splits a merged GEMM across
two formats unless the exact cost says that helps.

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

    def merge_groups(self, space) -> list[list[int]]:
        """The units of ``space`` grouped as the engine runs their GEMMs: the single-op units of one
        layer's q/k/v (and gate/up, and an expert's gate/up) form one group (sim/engines.yaml
        ``merged_gemms``: one GEMM while they share a format); every other unit is its own group."""
        from sim.engines import DEFAULT_ENGINE, merged_gemms

        names = self.spec.names
        n_layers = getattr(self.spec, "layers", 0)
        where = {}
        for g, fields in enumerate(merged_gemms(DEFAULT_ENGINE)):
            parts = [getattr(names, f, "") for f in fields]
            if not all(parts):
                continue
            for i in range(n_layers):
                for f, part in zip(fields, parts):
                    full = f"{names.layer}.{names.attn}.{part}" if f in ("q", "k", "v") else f"{names.layer}.{part}"
                    if "{e}" in full:
                        continue  # experts are named per expert: grouped below by their expert index
                    where[full.format(i=i)] = (g, i)
        groups: dict = {}
        for j, u in enumerate(space.units):
            key = where.get(u[0]) if len(u) == 1 else None
            groups.setdefault(key if key is not None else ("unit", j), []).append(j)
        return list(groups.values())

    def unit_gains(self, space, groups=None) -> np.ndarray:
        """Cost saved by each group of units (``groups``, default one unit each) going low: the larger
        of what it saves alone (the all-high map minus that map) and what it saves among the others
        (the all-low map with it high, minus the all-low map). Costs are not additive: an engine
        runs q/k/v (and gate/up) as one GEMM only while they share a format."""
        n = len(space.units)
        groups = groups if groups is not None else [[i] for i in range(n)]
        maps = [space.to_map(np.zeros(n, bool), name="high"), space.to_map(np.ones(n, bool), name="low")]
        for g, idx in enumerate(groups):
            alone, others = np.zeros(n, bool), np.ones(n, bool)
            alone[idx], others[idx] = True, False
            maps += [space.to_map(alone, name=f"group{g}"), space.to_map(others, name=f"all-but-{g}")]
        c = self.costs(maps)
        return np.maximum(np.maximum(c[0] - c[2::2], c[3::2] - c[1]), 0.0)

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
