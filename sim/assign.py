"""Assignment: an op table and a precision map -> the model's ops with their formats, as records.

The first of the cost model's three steps (assign, lower, price; docs/DESIGN.md). The result,
:class:`AssignedModel`, knows no device: formats, bytes per element, stored weight bytes and the
KV cache's size per token. It is memoised on the content of its inputs (the frozen model spec or
the table's values, and the map's JSON), so asking again for the same model and map is free and a
changed map or table is never served stale; its rows and arrays are read-only and ``table`` builds
a new DataFrame on each access.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant.formats import parse_format
from quant.precision import MAP_ROLES, PrecisionMap, assign_format_rows
from mpqsim import FrozenDict
from sim.fields import FORMAT_FIELDS, OP_DTYPE
from workloads.optable import AV, QK, model_rows, op_names, op_records
from workloads.spec import ModelSpec

#: Format column of the assigned table behind each format-bytes field.
_FORMAT_COLUMN = {"wbytes": "weight_fmt", "abytes": "act_fmt", "obytes": "out_fmt", "kvbytes": "kv_fmt"}
assert set(_FORMAT_COLUMN) == set(FORMAT_FIELDS)


@dataclass(frozen=True, eq=False)
class AssignedModel:
    """A model's op table under one precision map (no device yet).

    ``rows`` are the assigned table's rows (read-only dicts: the op table's columns plus
    ``weight_fmt`` / ``act_fmt`` / ``out_fmt`` / ``kv_fmt``); ``ops`` holds one
    :data:`sim.fields.OP_DTYPE` record per row; ``weight_bytes`` is the stored weights (parameters
    in their weight format, biases in the output format); ``kv_coef`` / ``kv_window`` give, per
    attention row, the KV bytes per held token (all its layers) and its sliding window (0 = the
    whole context); ``op_formats`` is (kind, weight format, activation format, element-wise class) per row.
    """

    spec: ModelSpec | None
    pmap: PrecisionMap
    rows: tuple
    ops: np.ndarray
    weight_bytes: float
    kv_coef: np.ndarray
    kv_window: np.ndarray
    op_formats: tuple
    model_name: str = "custom"
    layout: object = None          # workloads.parallel.Layout the rows are one device's share of (None: one device)

    @property
    def table(self) -> pd.DataFrame:
        """The assigned op table as a DataFrame (a new one on every access)."""
        df = pd.DataFrame({c: [r[c] for r in self.rows] for c in self.rows[0]}) if self.rows else pd.DataFrame()
        df.attrs.update(model=self.model_name, precision=self.pmap.name)
        return df

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self.rows]

    def column(self, name: str) -> np.ndarray:
        """One column of the assigned table as an array."""
        return np.array([r[name] for r in self.rows])

    @property
    def stages(self) -> int:
        return self.layout.pp if self.layout is not None else 1

    def _stage_matrix(self) -> np.ndarray:
        """(rows, stages): instances of each row on each pipeline stage (one stage: ``repeat``)."""
        from workloads.parallel import stage_of_layer

        pp = self.stages
        m = np.zeros((len(self.rows), pp))
        n_layers = self.spec.layers if self.spec is not None else 1
        for j, r in enumerate(self.rows):
            if pp == 1 or r["role"] == "comm":
                m[j, 0 if pp == 1 else 0] = r["repeat"] if pp == 1 else 0
            elif r["layers"]:
                for i in r["layers"]:
                    m[j, stage_of_layer(i, n_layers, pp)] += 1
            else:  # embeddings (and their projection) on the first stage, the head on the last
                m[j, 0 if r["role"] == "embed" or r["name"] == getattr(self.spec.names, "project_in", "") else pp - 1] = 1
        return m

    def stage_weight_bytes(self) -> np.ndarray:
        """Stored weight bytes on each pipeline stage's device (one value without pipelining)."""
        wb, ob = self.ops["wbytes"], self.ops["obytes"]
        col = lambda name: np.array([r[name] for r in self.rows], dtype=float)  # noqa: E731
        bias = col("b_elems")
        per_inst = ((col("params") - bias) * wb + bias * ob) * np.maximum(col("row_experts"), 1)
        return per_inst @ self._stage_matrix()

    def stage_kv_bytes(self, batch, context) -> np.ndarray:
        """KV-cache bytes on each stage's device (last axis: stages) for ``batch`` x ``context``."""
        batch, context = np.asarray(batch, float), np.asarray(context, float)
        attn = np.isin(self.ops["kind"], [QK, AV])
        share = self._stage_matrix()[attn] / np.maximum(self.column("repeat")[attn], 1)[:, None]  # (attn rows, stages)
        held = np.where(self.kv_window > 0, np.minimum(context[..., None], self.kv_window), context[..., None])
        return batch[..., None] * ((held * self.kv_coef)[..., :, None] * share).sum(axis=-2)

    def kv_bytes(self, batch, context) -> np.ndarray:
        """KV-cache bytes held for ``batch`` sequences of ``context`` tokens (array-broadcasting)."""
        batch, context = np.asarray(batch, float), np.asarray(context, float)
        held = np.where(self.kv_window > 0, np.minimum(context[..., None], self.kv_window), context[..., None])
        return batch * (held * self.kv_coef).sum(axis=-1)


_MEMO: OrderedDict = OrderedDict()
_MEMO_SIZE = 256


def _memo(key, build):
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _MEMO[key]
    val = build()
    _MEMO[key] = val
    if len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)
    return val


def _map_key(pmap: PrecisionMap) -> tuple:
    """The map's content (its formats are frozen, hashable values)."""
    return (pmap.name, pmap.default, pmap.kv_cache, tuple(sorted(pmap.roles.items())), tuple(sorted(pmap.ops.items())),
            pmap.proxy)


def assign(spec: ModelSpec, pmap: PrecisionMap, layout=None) -> AssignedModel:
    """Build the op table of ``spec`` (one device's share under a :class:`workloads.parallel.Layout`)
    and apply ``pmap`` (memoised on spec, map content and layout)."""
    if layout is not None and layout.trivial and layout.devices_per_node is None and not layout.ep:
        layout = None
    return _memo(("spec", spec, _map_key(pmap), layout),
                 lambda: _assign(model_rows(spec, layout), pmap, spec, spec.name, layout))


def assign_table(table: pd.DataFrame, pmap: PrecisionMap, spec: ModelSpec | None = None) -> AssignedModel:
    """Apply ``pmap`` to any op table (a model's, or an ad-hoc one such as a single GEMM)."""
    rows = table.to_dict("records")
    key = ("table", json.dumps(rows, sort_keys=True, default=str), spec, _map_key(pmap))
    return _memo(key, lambda: _assign(rows, pmap, spec, table.attrs.get("model", "custom")))


def _assign(rows, pmap: PrecisionMap, spec: ModelSpec | None, model_name: str, layout=None) -> AssignedModel:
    if pmap.ops:  # only explicit entries can name an op the model lacks (a device's share: the whole model's)
        pmap.validate(op_names(model_rows(spec) if layout is not None and spec is not None else rows, roles=MAP_ROLES))
    t = tuple(FrozenDict(r) for r in assign_format_rows(rows, pmap))
    ops = op_records(t, OP_DTYPE)
    for field, col in _FORMAT_COLUMN.items():
        ops[field] = [parse_format(r[col]).bytes_per_element for r in t]
    wb, ob, kvb = ops["wbytes"], ops["obytes"], ops["kvbytes"]
    col = lambda name: np.array([r[name] for r in t])  # noqa: E731
    inst = col("repeat") * np.maximum(col("row_experts"), 1)
    bias = col("b_elems")
    weight_bytes = float((((col("params") - bias) * wb + bias * ob) * inst).sum())
    attn = np.isin(col("kind"), [QK, AV])  # QK rows hold K, AV rows hold V
    kv_coef = (col("repeat") * col("kv_heads") * col("head_dim"))[attn] * kvb[attn]
    kv_window = col("window").astype(float)[attn]
    for a in (ops, kv_coef, kv_window):
        a.setflags(write=False)
    formats = tuple((r["kind"], r["weight_fmt"], r["act_fmt"], r.get("ew", 0)) for r in t)
    return AssignedModel(spec, pmap, t, ops, weight_bytes, kv_coef, kv_window, formats, model_name, layout)
