"""The roofline cost model: a Numba kernel over flat arrays of ops x configurations.

For op j on device d at configuration c (batch, new tokens per sequence ``q``, cached ``past``)::

    time = max(flops * max(M, m_min) / M / (peak[unit] * eff_compute),    # compute
               bytes / (bandwidth * eff_memory))                           # memory
           + launches * launch_overhead

``unit`` follows :mod:`sim.units`; bytes are weights (stored format, scale overhead included) +
input activations (the op's activation format) + outputs (the high-precision format) + KV-cache
reads and writes (the KV format); shapes and element counts come from
:func:`workloads.optable.op_counts`, the same compiled code the op tables use. The ``max(M, m_min)``
padding models GEMMs with fewer rows than the smallest tensor-core tile (a GEMV pays for a full
tile of ``m_min`` rows); it is monotone, so time never falls as batch or context grow, and every efficiency
is <= 1, so no op beats its roofline floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from hwmodels.spec import DeviceSpec
from quant.formats import parse_format
from quant.precision import PrecisionMap, assign_formats
from sim.units import VECTOR, compute_unit
from workloads.optable import (C_B, C_FLOPS, C_IN, C_KVR, C_KVW, C_M, C_OUT, C_W, COUNT_FIELDS,
                               F_KIND, F_LAUNCH, F_REPEAT, QK, AV, VECTOR as K_VECTOR, SOFTMAX,
                               EMBED, build_optable, op_array, op_counts, op_names)
from workloads.spec import ModelSpec

#: What the kernel writes per (configuration, op) when asked for detail.
DETAIL_FIELDS = ("time", "t_compute", "t_memory", "flops", "bytes_w", "bytes_act", "bytes_kv", "m")
D_TIME, D_TC, D_TM, D_FLOPS, D_BW, D_BA, D_BKV, D_M = range(len(DETAIL_FIELDS))


@numba.njit(cache=True, inline="always")
def op_time(ops, j, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, batch, q, past, cnt, out):
    """Roofline time of one instance of op ``j`` (no launch overhead) for (batch, q, past) on one
    device (``rate``/``m_min`` are that device's per-op rows). Fills ``cnt`` (COUNT_FIELDS) and
    ``out`` = (t_compute, t_memory, bytes_w, bytes_act, bytes_kv); returns max(t_compute, t_memory)."""
    op_counts(ops, j, batch, q, past, cnt)
    b_w = cnt[C_W] * wbytes[j] + cnt[C_B] * obytes[j]
    b_a = cnt[C_IN] * abytes[j] + cnt[C_OUT] * obytes[j]
    b_kv = (cnt[C_KVR] + cnt[C_KVW]) * kvbytes[j]
    m = cnt[C_M]
    pad = m_min[j] / m if m < m_min[j] else 1.0
    t_c = cnt[C_FLOPS] * pad / rate[j] if cnt[C_FLOPS] > 0.0 else 0.0
    t_m = (b_w + b_a + b_kv) / bw
    out[0] = t_c
    out[1] = t_m
    out[2] = b_w
    out[3] = b_a
    out[4] = b_kv
    return max(t_c, t_m)


@numba.njit(cache=True)
def price_kernel(ops, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, launch,
                 cfg_dev, cfg_batch, cfg_q, cfg_past, total, act_peak, detail):
    """Price every op of one model (one precision) at every configuration.

    ops (n_ops, OP_FIELDS); wbytes/abytes/obytes/kvbytes (n_ops,) bytes per element;
    rate (n_dev, n_ops) effective FLOP/s of the unit each op runs on; m_min (n_dev, n_ops)
    (MMA tile rows; 0 = no padding); bw (n_dev,) effective bytes/s; launch (n_dev,) s per kernel;
    cfg_* (n_cfg,). Writes total[c] (s, all layers), act_peak[c] (bytes, largest single-op
    input + output) and, if detail has n_cfg rows, detail[c, j, DETAIL_FIELDS] per op instance.
    """
    n_ops = ops.shape[0]
    cnt = np.empty(len(COUNT_FIELDS))
    parts = np.empty(5)
    want_detail = detail.shape[0] > 0
    for c in range(cfg_dev.shape[0]):
        d = cfg_dev[c]
        rate_d, m_min_d, bw_d, launch_d = rate[d], m_min[d], bw[d], launch[d]
        batch, q, past = cfg_batch[c], cfg_q[c], cfg_past[c]
        t_sum = 0.0
        peak_act = 0.0
        for j in range(n_ops):
            t = op_time(ops, j, wbytes, abytes, obytes, kvbytes, rate_d, m_min_d, bw_d, batch, q, past, cnt,
                        parts) + ops[j, F_LAUNCH] * launch_d
            t_sum += t * ops[j, F_REPEAT]
            if parts[3] > peak_act:
                peak_act = parts[3]
            if want_detail:
                detail[c, j, D_TIME] = t
                detail[c, j, D_TC] = parts[0]
                detail[c, j, D_TM] = parts[1]
                detail[c, j, D_FLOPS] = cnt[C_FLOPS]
                detail[c, j, D_BW] = parts[2]
                detail[c, j, D_BA] = parts[3]
                detail[c, j, D_BKV] = parts[4]
                detail[c, j, D_M] = cnt[C_M]
        total[c] = t_sum
        act_peak[c] = peak_act


@numba.njit(cache=True)
def iteration_kernel(ops, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, launch, seqs, tokens,
                     n_decode, decode_ctx_sum, pre_q, pre_past, out):
    """Time and FLOPs of one serving iteration on one device: a batch of ``seqs`` sequences with
    ``tokens`` new tokens in all, of which ``n_decode`` decode sequences (contexts summing to
    ``decode_ctx_sum``) and prefill chunks (``pre_q`` new tokens after ``pre_past`` cached each).

    Token-wise ops (projections, MLP, norms, embeddings) see all ``tokens`` at once (lm_head one
    row per sequence). Attention ops sum the work of each prefill chunk and of the decode group,
    priced as ``n_decode`` sequences at their mean context (exact where attention work is linear
    in the context, i.e. without a sliding window shorter than the contexts), one launch per op.
    Writes out[0] = seconds, out[1] = FLOPs.
    """
    cnt = np.empty(len(COUNT_FIELDS))
    parts = np.empty(5)
    t_sum = 0.0
    flops = 0.0
    for j in range(ops.shape[0]):
        kind = int(ops[j, F_KIND])
        reps = ops[j, F_REPEAT]
        if kind == QK or kind == AV or kind == SOFTMAX:
            t = 0.0
            f = 0.0
            if n_decode > 0:
                t += op_time(ops, j, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, float(n_decode), 1.0,
                             decode_ctx_sum / n_decode - 1.0, cnt, parts)
                f += cnt[C_FLOPS]
            for i in range(pre_q.shape[0]):
                t += op_time(ops, j, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, 1.0, pre_q[i], pre_past[i],
                             cnt, parts)
                f += cnt[C_FLOPS]
        else:
            t = op_time(ops, j, wbytes, abytes, obytes, kvbytes, rate, m_min, bw, float(seqs), tokens / seqs, 0.0,
                        cnt, parts)
            f = cnt[C_FLOPS]
        t_sum += (t + ops[j, F_LAUNCH] * launch) * reps
        flops += f * reps
    out[0] = t_sum
    out[1] = flops


@dataclass
class PricedModel:
    """A model's op table under one precision map, as the arrays the kernel prices."""

    spec: ModelSpec | None
    pmap: PrecisionMap
    table: pd.DataFrame          # op table with weight_fmt / act_fmt / out_fmt / kv_fmt columns
    ops: np.ndarray
    wbytes: np.ndarray
    abytes: np.ndarray
    obytes: np.ndarray
    kvbytes: np.ndarray
    weight_bytes: float          # stored weights: parameters in their weight format, biases in the output format
    kv_coef: np.ndarray          # per attention row: KV bytes per held token (all its layers)
    kv_window: np.ndarray        # per attention row: sliding window (0 = holds the whole context)

    def kv_bytes(self, batch, context) -> np.ndarray:
        """KV-cache bytes held for ``batch`` sequences of ``context`` tokens (array-broadcasting)."""
        batch, context = np.asarray(batch, float), np.asarray(context, float)
        held = np.where(self.kv_window > 0, np.minimum(context[..., None], self.kv_window), context[..., None])
        return batch * (held * self.kv_coef).sum(axis=-1)


def prepare(spec: ModelSpec, pmap: PrecisionMap, fused_attention: bool = True) -> PricedModel:
    """Build the op table of ``spec``, apply ``pmap`` and turn it into kernel arrays."""
    return prepare_table(build_optable(spec, fused_attention=fused_attention), pmap, spec)


def prepare_table(table: pd.DataFrame, pmap: PrecisionMap, spec: ModelSpec | None = None) -> PricedModel:
    """Apply ``pmap`` to any op table (a model's, or an ad-hoc one such as a single GEMM)."""
    pmap.validate(op_names(table))
    t = assign_formats(table, pmap)
    bpe = lambda col: np.array([parse_format(f).bytes_per_element for f in t[col]])  # noqa: E731
    wb, ab, ob, kvb = bpe("weight_fmt"), bpe("act_fmt"), bpe("out_fmt"), bpe("kv_fmt")
    inst = (t["repeat"] * np.maximum(t["experts_n"], 1)).to_numpy()
    bias = t["b_elems"].to_numpy()
    weight_bytes = float((((t["params"].to_numpy() - bias) * wb + bias * ob) * inst).sum())
    attn = t["kind"].isin([QK, AV]).to_numpy()  # QK rows hold K, AV rows hold V
    kv_coef = (t["repeat"] * t["kv_heads"] * t["head_dim"]).to_numpy()[attn] * kvb[attn]
    return PricedModel(spec, pmap, t, op_array(t), wb, ab, ob, kvb, weight_bytes, kv_coef,
                       t["window"].to_numpy(dtype=float)[attn])


def op_units(priced: PricedModel, device: DeviceSpec) -> list[str]:
    """The compute unit of every op row on ``device`` (``vector`` for element-wise ops)."""
    t = priced.table
    return [VECTOR if k in (K_VECTOR, SOFTMAX, EMBED) else compute_unit(device, w, a)
            for k, w, a in zip(t["kind"], t["weight_fmt"], t["act_fmt"])]


def device_arrays(priced: PricedModel, devices: list[DeviceSpec], eager: bool = False):
    """Per-device kernel inputs: rate and m_min (n_dev, n_ops), bandwidth and launch (n_dev,)."""
    n_ops = len(priced.table)
    rate = np.empty((len(devices), n_ops))
    m_min = np.zeros((len(devices), n_ops))
    for d, dev in enumerate(devices):
        for j, u in enumerate(op_units(priced, dev)):
            if u == VECTOR:
                rate[d, j] = dev.vector_flops * dev.eff_vector
            else:
                rate[d, j] = dev.peak(u) * dev.compute_efficiency(u)
                m_min[d, j] = dev.eff_m_min
    bw = np.array([dev.bandwidth * dev.eff_memory for dev in devices])
    launch = np.array([dev.launch_eager_s if eager else dev.launch_s for dev in devices])
    return rate, m_min, bw, launch


def price(priced: PricedModel, devices: list[DeviceSpec], cfg_dev, cfg_batch, cfg_q, cfg_past,
          detail: bool = False, eager: bool = False, dev_arrays=None):
    """Price configurations; returns (total seconds, activation-peak bytes, detail or None)."""
    rate, m_min, bw, launch = dev_arrays or device_arrays(priced, devices, eager)
    cfg_dev = np.ascontiguousarray(cfg_dev, dtype=np.int64)
    n = cfg_dev.shape[0]
    arr = lambda x: np.ascontiguousarray(np.broadcast_to(np.asarray(x, float), (n,)))  # noqa: E731
    total, act = np.empty(n), np.empty(n)
    det = np.zeros((n if detail else 0, len(priced.table), len(DETAIL_FIELDS)))
    price_kernel(priced.ops, priced.wbytes, priced.abytes, priced.obytes, priced.kvbytes, rate,
                 m_min, bw, launch, cfg_dev, arr(cfg_batch), arr(cfg_q), arr(cfg_past), total, act, det)
    return total, act, (det if detail else None)

