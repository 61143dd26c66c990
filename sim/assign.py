"""Assignment: an op table and a precision map -> the model's ops with their formats, as records.

The first of the cost model's three steps (assign, lower, price; DESIGN.md). The result,
:class:`AssignedModel`, knows no device: formats, bytes per element, stored weight bytes and the
KV cache's size per token. It is memoised on the content of its inputs (the frozen model spec or
the table's values, and the map's JSON), so asking again for the same model and map is free and a
changed map or table is never served stale; its arrays are read-only and ``table`` returns a copy.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant.formats import parse_format
from quant.precision import PrecisionMap, assign_formats
from sim.fields import FORMAT_FIELDS, OP_DTYPE
from workloads.optable import AV, QK, build_optable, op_names, op_records
from workloads.spec import ModelSpec

#: Format column of the assigned table behind each format-bytes field.
_FORMAT_COLUMN = {"wbytes": "weight_fmt", "abytes": "act_fmt", "obytes": "out_fmt", "kvbytes": "kv_fmt"}
assert set(_FORMAT_COLUMN) == set(FORMAT_FIELDS)


@dataclass(frozen=True, eq=False)
class AssignedModel:
    """A model's op table under one precision map (no device yet).

    ``ops`` holds one :data:`sim.fields.OP_DTYPE` record per row of the table; ``weight_bytes``
    is the stored weights (parameters in their weight format, biases in the output format);
    ``kv_coef`` / ``kv_window`` give, per attention row, the KV bytes per held token (all its
    layers) and its sliding window (0 = the whole context).
    """

    spec: ModelSpec | None
    pmap: PrecisionMap
    _table: pd.DataFrame
    ops: np.ndarray
    weight_bytes: float
    kv_coef: np.ndarray
    kv_window: np.ndarray
    op_formats: tuple = ()       # per row: (kind, weight format, activation format)

    @property
    def table(self) -> pd.DataFrame:
        """The op table with ``weight_fmt`` / ``act_fmt`` / ``out_fmt`` / ``kv_fmt`` (a copy)."""
        return self._table.copy()

    @property
    def names(self) -> list[str]:
        return list(self._table["name"])

    def column(self, name: str) -> np.ndarray:
        """One column of the table as a (read-only) array, without copying the table."""
        a = self._table[name].to_numpy()
        a = a.view() if isinstance(a, np.ndarray) else np.asarray(a)
        a.setflags(write=False)
        return a

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


def _map_key(pmap: PrecisionMap) -> str:
    return json.dumps(pmap.to_json(), sort_keys=True)


def assign(spec: ModelSpec, pmap: PrecisionMap) -> AssignedModel:
    """Build the op table of ``spec`` and apply ``pmap`` (memoised on spec and map content)."""
    return _memo(("spec", spec, _map_key(pmap)), lambda: _assign(build_optable(spec), pmap, spec))


def assign_table(table: pd.DataFrame, pmap: PrecisionMap, spec: ModelSpec | None = None) -> AssignedModel:
    """Apply ``pmap`` to any op table (a model's, or an ad-hoc one such as a single GEMM)."""
    key = ("table", pd.util.hash_pandas_object(table.astype({c: str for c in ("layers", "expert_ids")}),
                                               index=False).to_numpy().tobytes(), spec, _map_key(pmap))
    return _memo(key, lambda: _assign(table.copy(), pmap, spec))


def _assign(table: pd.DataFrame, pmap: PrecisionMap, spec: ModelSpec | None) -> AssignedModel:
    pmap.validate(op_names(table))
    t = assign_formats(table, pmap)
    ops = op_records(t, OP_DTYPE)
    for field, col in _FORMAT_COLUMN.items():
        ops[field] = [parse_format(f).bytes_per_element for f in t[col]]
    wb, ob, kvb = ops["wbytes"], ops["obytes"], ops["kvbytes"]
    inst = (t["repeat"] * np.maximum(t["row_experts"], 1)).to_numpy()
    bias = t["b_elems"].to_numpy()
    weight_bytes = float((((t["params"].to_numpy() - bias) * wb + bias * ob) * inst).sum())
    attn = t["kind"].isin([QK, AV]).to_numpy()  # QK rows hold K, AV rows hold V
    kv_coef = (t["repeat"] * t["kv_heads"] * t["head_dim"]).to_numpy()[attn] * kvb[attn]
    kv_window = t["window"].to_numpy(dtype=float)[attn]
    for a in (ops, kv_coef, kv_window):
        a.setflags(write=False)
    formats = tuple(zip(t["kind"].tolist(), t["weight_fmt"].tolist(), t["act_fmt"].tolist()))
    return AssignedModel(spec, pmap, t, ops, weight_bytes, kv_coef, kv_window, formats)
