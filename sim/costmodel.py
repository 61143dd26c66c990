"""The roofline cost model: price lowered ops at configurations, one Numba kernel, fields by name.

Three steps (docs/DESIGN.md): :func:`sim.assign.assign` (op table + precision map -> formats),
:func:`sim.lowering.lower` (x devices -> units, kernels, rates, launches), :func:`price` (x
configurations -> a :class:`CostTable`). For op j on device d at configuration c (batch, new
tokens per sequence ``q``, cached ``past``), :func:`op_cost` gives::

    time = max(flops * pad / rate,                        # compute: achieved rate of the op's unit
               m * weight_elems / dequant_rate,           # (weight-only kernels dequantizing per row)
               bytes / (bandwidth * stream))              # memory: achieved bandwidth of the kernel
           + launches * (launch_s + fixed_s) + glue * (launch_s + glue_fixed_s)

An element-wise kernel with an occupancy roof (``occupancy`` > 0: resident threads x the kernel's
per-thread rate, :func:`sim.lowering.occupancy_rate`) is latency-bound: its memory time is the
larger of its DRAM bytes at ``bandwidth * stream`` (activations that fit in the L2 are not DRAM
bytes) and all its bytes at ``occupancy``.

Bytes are weights (stored format, scale overhead included) + input activations (the op's
activation format) + outputs (the high-precision format) + attention scores where the lowered
kernel materialises them + KV-cache reads and writes (the KV format); shapes and element counts
come from :func:`workloads.optable.op_counts`, the same compiled code the op tables use. For a
GEMM kernel (hwmodels/kernels.yaml: ``tile_n`` > 0) ``pad`` is tile and wave quantisation: the
output is ``ceil(m / tile_m) x ceil(n / tile_n)`` tiles run in whole waves over the SMs; a wave of
fewer tiles than SMs takes one tile's k-loop, split up to ``split_k`` ways over the idle SMs while
the split wave fills at most ``1 / split_fill`` of them (so a
GEMV pays for a full tile's rows, and a GEMM one tile past a wave pays for another wave), and a
lone wave's k-loop takes at least ``k x kloop_s / split`` (its latency-bound pipeline; a GEMM of
whole waves at least ``k x kloop_s``, so time stays monotone in m); for other kernels
``pad = max(M, tile_m) / M`` (the smallest MMA tile). Both are monotone in m, so time never falls
as batch or context grow. ``stream``, ``fixed_s``, ``compute`` (folded into ``rate``) and
``dequant_rate`` are the kernel's constants on the device's architecture (fitted where measured).

That is the cost at the peak clock (s = 1). Energy (hwmodels/power.py) = flops x e_flop of the
unit + DRAM bytes x (e_dram + e_onchip) + L2-resident activation bytes (an op's activations that fit
in the L2) x e_onchip + static_w x
time. Each op then runs at the clock the power cap allows (:func:`solve_clock`): the highest
s <= s_max (boost / peak clock) with static + (compute and on-chip energy x s^kappa + DRAM
energy) / (max(t_compute / s, t_memory) + launches) <= cap; :func:`at_clock` gives the cost
there. Memory time does not depend on the clock, so memory-bound ops throttle less.

Inputs and outputs are the record layouts of :mod:`sim.fields`; the kernels are compiled by
:func:`sim.jit.kernel`, whose file cache is keyed on the sources they inline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import literal_unroll
import pandas as pd

from mpqsim import InputError
from sim.assign import AssignedModel, assign, assign_table
from sim.fields import (CONFIG_DTYPE, COST_DTYPE, COST_TERMS, RULE_SUM, TOTAL_DTYPE, TOTAL_RULE, TOTAL_TERM,
                        TOTALS, Cost, records)
from sim.jit import as_rows, interpreted, kernel
from sim.lowering import KERNEL_NAMES, UNIT_NAMES, Lowered, lower
from workloads.optable import AV, KIND_NAMES, QK, SOFTMAX, op_counts

N_TOTALS = len(TOTALS)
N_TERMS = len(COST_TERMS)
#: A process prices its first op-configurations with the kernel interpreted (:func:`sim.jit.interpreted`,
#: same code, same bits: tested), up to this many in all, before it loads the compiled kernel: a
#: one-point question then skips the ~0.4 s that loading compiled code costs; anything larger runs
#: compiled. Only speed depends on this counter, never an answer.
INTERPRET_BUDGET = 4000
_interpret_left = [INTERPRET_BUDGET]


@numba.njit(inline="always")
def launch_time(low, dev, q):
    """Launches and fixed costs of one op instance: its own kernels and the engine's glue kernels
    (a decode step of fused attention runs the paged-decode kernel, with its own fixed cost)."""
    fixed = low.dec_fixed_s if q <= 1.0 and low.dec_stream > 0.0 else low.fixed_s
    return low.launches * (dev.launch_s + fixed) + low.glue * (dev.launch_s + low.glue_fixed_s)


@numba.njit(inline="always")
def op_cost(op, low, dev, batch, q, past):
    """:data:`sim.fields.Cost` of one instance of op record ``op`` with lowered record ``low`` on
    device record ``dev``, for ``batch`` sequences of ``q`` new tokens after ``past`` cached, at the
    peak clock (s = 1): :func:`at_clock` moves it to the clock the power cap allows."""
    cnt = op_counts(op, batch, q, past)
    s_r = cnt.score_read if low.materialise_scores > 0 else 0.0
    s_w = cnt.score_write if low.materialise_scores > 0 else 0.0
    b_w = cnt.w_elems * op.wbytes + cnt.b_elems * op.obytes
    b_a = ((cnt.in_elems + s_r) * op.abytes + (cnt.out_elems + s_w) * op.obytes) * low.traffic
    b_kv = (cnt.kv_read + cnt.kv_write) * op.kvbytes
    m = cnt.m
    t_loop = 0.0
    if low.tile_n > 0.0 and m > 0.0 and cnt.n > 0.0:  # a GEMM kernel: whole tiles, in waves over the SMs
        tiles = cnt.count * math.ceil(m / low.tile_m) * math.ceil(cnt.n / low.tile_n)
        if tiles >= low.sms:  # whole waves; none faster than one unsplit latency-bound k-loop
            slots = math.ceil(tiles / low.sms) * low.sms
            t_loop = cnt.k * low.kloop_s
        else:  # one wave: each tile's k-loop split up to split_k ways over the idle SMs while the
            # split wave fills at most 1 / split_fill of them, and no faster than its latency-bound
            # pipeline (one CTA per SM hides no latency)
            split = max(1.0, min(low.split_k, math.floor(low.sms / (max(low.split_fill, 1.0) * tiles))))
            slots = low.sms / split
            t_loop = cnt.k * low.kloop_s / split
        pad = slots * low.tile_m * low.tile_n / (cnt.count * m * cnt.n)
    else:
        pad = low.tile_m / m if m < low.tile_m else 1.0
    rate, stream = low.rate, low.stream
    if q <= 1.0 and low.dec_stream > 0.0:  # fused attention of one new token: the paged-decode kernel
        rate, stream = low.dec_rate, low.dec_stream
    t_c = max(cnt.flops * pad / rate, t_loop) if cnt.flops > 0.0 else 0.0
    if low.dequant_rate > 0.0:  # weights dequantized on the compute path for every row (and a pipeline
        # fill of dequant_rows rows a call)
        t_c = max(t_c, (m + low.dequant_rows) * cnt.w_elems / low.dequant_rate)
    # activations that fit in the L2 stay there (per kernel: an engine's unfused pieces each move
    # b_a / launches)
    b_chip = b_a if b_a <= dev.l2_bytes * max(1.0, low.launches) else 0.0
    b_dram = b_w + b_kv + b_a - b_chip
    t_m = (b_w + b_a + b_kv) / (dev.bandwidth * stream)
    if low.occupancy > 0.0:  # latency-bound element-wise kernel: its DRAM bytes at the DRAM roof, and
        # every byte no faster than the resident threads' bytes in flight allow (occupancy roof)
        t_m = max(b_dram / (dev.bandwidth * stream), (b_w + b_a + b_kv) / low.occupancy)
    e_wire = 0.0
    if low.comm_b1 > 0.0:  # a collective: the buffer over the links (sim/collectives.py), not memory-bound
        buf = cnt.in_elems * op.abytes
        t_m = min(low.comm_a1 + buf * low.comm_b1, low.comm_a2 + buf * low.comm_b2)
        e_wire = buf * low.e_link
    t_l = launch_time(low, dev, q)
    t = max(t_c, t_m) + t_l
    mem_bound = t_m >= t_c
    e_c = cnt.flops * low.e_flop
    e_d = b_dram * dev.e_dram + e_wire
    e_on = (b_dram + b_chip) * dev.e_onchip
    e_s = dev.static_w * t
    t_mb = t if mem_bound else 0.0
    t_cb = t - t_mb
    return Cost(t, t_c, t_m, t_l, t_mb, t_cb, cnt.flops, b_w, b_a, b_kv, m, cnt.n, cnt.k, cnt.count,
                e_c + e_d + e_on + e_s, e_c, e_d, e_on, e_s, dev.clock_hz * t)  # COST_TERMS order


@numba.njit(inline="always")
def _pow_k(s, kappa):
    """s ** kappa, without a pow call for the usual exponents."""
    if kappa == 1.0:
        return s
    if kappa == 2.0:
        return s * s
    return s ** kappa


@numba.njit(inline="always")
def _power_at(c, dev, s):
    """Average power (W) of one op (its :data:`Cost` ``c`` at s = 1) run at clock ``s``."""
    t = max(c.t_compute / s, c.t_memory) + c.t_launch
    return dev.static_w + ((c.e_compute + c.e_onchip) * _pow_k(s, dev.kappa) + c.e_dram) / t


@numba.njit(inline="always")
def _root_compute(a, b, cc, tc, tl, kappa, hi):
    """s > 0 with a s^(kappa+1) + (b - cc tl) s - cc tc = 0 (the compute-bound side of power = cap)."""
    lin = b - cc * tl
    if kappa == 1.0:
        return (-lin + math.sqrt(lin * lin + 4.0 * a * cc * tc)) / (2.0 * a)
    x = hi  # convex in s: Newton from the right converges monotonically
    for _ in range(30):
        f = a * x ** (kappa + 1.0) + lin * x - cc * tc
        x_new = x - f / ((kappa + 1.0) * a * x ** kappa + lin)
        if abs(x_new - x) <= 1e-13 * x:
            return x_new
        x = x_new
    return x


@numba.njit(inline="always")
def solve_clock(c, dev):
    """(s, stretch): the clock (fraction of the peak clock) of one op whose :data:`Cost` ``c`` was
    computed at s = 1: the highest s <= s_max whose average power (static + dynamic energy / time)
    fits under the cap. Compute time grows as 1/s and energy per operation falls as s^kappa; memory
    time does not change, so memory-bound work throttles less. Power rises with s, so the answer is
    unique: closed form on the memory-bound side, the root of a convex polynomial on the
    compute-bound side. If even s_min draws more (memory traffic alone over the cap), the device
    idles between bursts: time x ``stretch`` > 1."""
    hi = dev.s_max
    if c.time <= 0.0 or _power_at(c, dev, hi) <= dev.cap_w:
        return hi, 1.0
    lo = dev.s_min
    p_lo = _power_at(c, dev, lo)
    if p_lo > dev.cap_w:
        return lo, (p_lo - dev.static_w) / (dev.cap_w - dev.static_w)
    a = c.e_compute + c.e_onchip
    cc = dev.cap_w - dev.static_w
    tc, tm, tl = c.t_compute, c.t_memory, c.t_launch
    edge = tc / tm if tm > 0.0 else hi  # compute-bound below this clock
    if edge < hi and _power_at(c, dev, max(edge, lo)) <= dev.cap_w:
        s = (cc * (tm + tl) - c.e_dram) / a  # memory-bound: time fixed
        if dev.kappa != 1.0:
            s = s ** (1.0 / dev.kappa)
    else:
        s = _root_compute(a, c.e_dram, cc, tc, tl, dev.kappa, hi)
    return min(max(s, lo), hi), 1.0


@numba.njit(inline="always")
def at_clock(c, dev, s, stretch):
    """The :data:`Cost` ``c`` (computed at s = 1 by :func:`op_cost`) at clock ``s``."""
    sk = _pow_k(s, dev.kappa)
    t_c = c.t_compute / s
    t = (max(t_c, c.t_memory) + c.t_launch) * stretch
    t_mb = t if c.t_memory >= t_c else 0.0
    e_c = c.e_compute * sk
    e_on = c.e_onchip * sk
    e_s = dev.static_w * t
    return Cost(t, t_c, c.t_memory, c.t_launch, t_mb, t - t_mb, c.flops, c.bytes_w, c.bytes_act, c.bytes_kv, c.m,
                c.n, c.k, c.count, e_c + c.e_dram + e_on + e_s, e_c, c.e_dram, e_on, e_s, s * dev.clock_hz * t)


@numba.njit(inline="always")
def op_cost_at_clock(op, low, dev, batch, q, past):
    """:func:`op_cost` at the clock the power cap allows (:func:`solve_clock`)."""
    c = op_cost(op, low, dev, batch, q, past)
    s, stretch = solve_clock(c, dev)
    return at_clock(c, dev, s, stretch)


#: (total, cost term, rule) positions, as a tuple of constants so the compiled loop is unrolled.
_TOTAL_PLAN = tuple((t, int(TOTAL_TERM[t]), int(TOTAL_RULE[t])) for t in range(N_TOTALS))


@numba.njit(inline="always")
def _accumulate(tot, cost, repeat):
    """Add one op's cost into a configuration's totals by the rules of :data:`sim.fields.TOTALS`."""
    for plan in literal_unroll(_TOTAL_PLAN):
        t, term, rule = plan
        v = cost[term]
        if rule == RULE_SUM:
            tot[t] += v * repeat
        elif v > tot[t]:
            tot[t] = v


@kernel
def price_kernel(ops, low, dev, cfg, totals, detail):
    """Price every op at every configuration.

    ops (n_ops,) OP_DTYPE; low (n_dev, n_ops) LOWERED_DTYPE; dev (n_dev,) DEVICE_DTYPE;
    cfg (n_cfg,) CONFIG_DTYPE. Writes totals (n_cfg, TOTALS) and, if detail has n_cfg rows,
    detail (n_cfg, n_ops, COST_TERMS): each op instance's cost, in registry order, at the clock
    the power cap allows it (:func:`solve_clock`).
    """
    n_ops = len(ops)
    want_detail = detail.shape[0] > 0
    for c in range(len(cfg)):
        x = cfg[c]
        d = x.device
        low_d = low[d]
        dev_d = dev[d]
        tot = totals[c]
        for t in range(N_TOTALS):
            tot[t] = 0.0
        for j in range(n_ops):
            op = ops[j]
            r = op_cost_at_clock(op, low_d[j], dev_d, x.batch, x.q, x.past)
            _accumulate(tot, r, op.repeat)
            if want_detail:
                for t in range(N_TERMS):
                    detail[c, j, t] = r[t]


@kernel
def iteration_kernel(ops, low, device, batch, pre_q, pre_past, result):
    """Writes :data:`sim.fields.Iteration` (seconds, FLOPs, seconds at peak, joules, clock) of one
    serving iteration on one device into ``result`` (one ITERATION_RESULT_DTYPE record).

    ``ops`` (n_ops,) OP_DTYPE; ``low`` (n_ops,) LOWERED_DTYPE and ``device`` (1,) DEVICE_DTYPE of
    that device; ``batch`` (1,) ITERATION_DTYPE, whose record ``it`` holds ``seqs`` sequences with
    ``tokens`` new tokens in all, of which ``n_decode`` decode sequences (contexts summing to
    ``decode_ctx_sum``), plus prefill
    chunks (``pre_q[i]`` new tokens after ``pre_past[i]`` cached each). Token-wise ops
    (projections, MLP, norms, embeddings) see all ``tokens`` at once (lm_head one row per
    sequence). Attention ops sum the work of each prefill chunk and of the decode group, priced as
    ``n_decode`` sequences at their mean context (exact where attention work is linear in the
    context, i.e. without a sliding window shorter than the contexts), one launch per op. Each
    piece runs at the clock the power cap allows it (:func:`solve_clock`).
    """
    it = batch[0]
    dev = device[0]
    t_sum = 0.0
    e_sum = 0.0
    c_sum = 0.0
    flops = 0.0
    busy = 0.0
    for j in range(ops.shape[0]):
        op = ops[j]
        lj = low[j]
        kind = int(op.kind)
        rep = op.repeat
        f = 0.0
        if kind == QK or kind == AV or kind == SOFTMAX:
            if it.n_decode > 0:
                r = at_clock_no_launch(op_cost(op, lj, dev, it.n_decode, 1.0, it.decode_ctx_sum / it.n_decode - 1.0), dev)
                t_sum += r.time * rep
                e_sum += r.energy * rep
                c_sum += r.clock_time * rep
                f += r.flops
            for i in range(pre_q.shape[0]):
                r = at_clock_no_launch(op_cost(op, lj, dev, 1.0, pre_q[i], pre_past[i]), dev)
                t_sum += r.time * rep
                e_sum += r.energy * rep
                c_sum += r.clock_time * rep
                f += r.flops
            q_any = 1.0 if it.n_decode > 0 and pre_q.shape[0] == 0 else 2.0  # a decode-only step runs paged decode
            t_l = launch_time(lj, dev, q_any)  # the op's launches, once: the device waits at static power
            t_sum += t_l * rep
            e_sum += dev.static_w * t_l * rep
            c_sum += dev.s_max * dev.clock_hz * t_l * rep
        else:
            r = op_cost_at_clock(op, lj, dev, it.seqs, it.tokens / it.seqs, 0.0)
            t_sum += r.time * rep
            e_sum += r.energy * rep
            c_sum += r.clock_time * rep
            f = r.flops
        flops += f * rep
        busy += f * rep / lj.peak if f > 0.0 else 0.0
    res = result[0]
    res.time = t_sum
    res.flops = flops
    res.busy_at_peak = busy
    res.energy = e_sum
    res.clock_hz = c_sum / t_sum if t_sum > 0.0 else dev.s_max * dev.clock_hz


@numba.njit(inline="always")
def at_clock_no_launch(c, dev):
    """One piece of an attention op (a prefill chunk or the decode group) without its launches
    (counted once per op), at the clock the power cap allows it."""
    t = max(c.t_compute, c.t_memory)
    e_s = dev.static_w * t
    c0 = Cost(t, c.t_compute, c.t_memory, 0.0, c.time_memory_bound, c.time_compute_bound, c.flops, c.bytes_w,
              c.bytes_act, c.bytes_kv, c.m, c.n, c.k, c.count, c.e_compute + c.e_dram + c.e_onchip + e_s,
              c.e_compute, c.e_dram, c.e_onchip, e_s, dev.clock_hz * t)
    s, stretch = solve_clock(c0, dev)
    return at_clock(c0, dev, s, stretch)


# ---------------------------------------------------------------- the priced result
@dataclass(frozen=True)
class CostTable:
    """What :func:`price` returns: per configuration, totals by name; per op, every cost term.

    ``configs`` (n,) CONFIG_DTYPE; ``totals`` (n,) TOTAL_DTYPE (``totals["time"]`` in s,
    ``totals["act_peak"]`` in bytes, ...); ``detail`` (n, n_ops) COST_DTYPE (one op instance;
    multiply by ``repeat`` for all layers) or None when not asked for.
    """

    lowered: Lowered
    configs: np.ndarray
    totals: np.ndarray
    detail: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.configs)

    def __getitem__(self, name: str) -> np.ndarray:
        """A total by name (``ct["time"]``), or a per-op term (``ct["op.t_memory"]``)."""
        if name.startswith("op."):
            if self.detail is None:
                raise KeyError(f"{name}: priced without detail (price(..., detail=True))")
            return self.detail[name[3:]]
        return self.totals[name]

    @property
    def repeat(self) -> np.ndarray:
        return self.lowered.ops["repeat"]

    def to_frame(self, per_op: bool = False) -> pd.DataFrame:
        """Configurations x totals; or, with ``per_op``, configurations x ops x cost terms (long form,
        with op name, kind, unit, kernel and ``repeat``)."""
        cfg = pd.DataFrame({f: self.configs[f] for f in self.configs.dtype.names})
        cfg.insert(1, "device_name", [self.lowered.devices[d].name for d in self.configs["device"]])
        if not per_op:
            return pd.concat([cfg, pd.DataFrame({f: self.totals[f] for f in TOTAL_DTYPE.names})], axis=1)
        if self.detail is None:
            raise ValueError("priced without detail: price(..., detail=True)")
        n, n_ops = self.detail.shape
        model = self.lowered.model
        kinds = model.column("kind")
        d_idx = self.configs["device"]
        out = cfg.loc[np.repeat(np.arange(n), n_ops)].reset_index(drop=True)
        out["op"] = np.tile(model.names, n)
        out["kind"] = np.tile([KIND_NAMES[k] for k in kinds], n)
        out["unit"] = [UNIT_NAMES[int(u)] for u in self.lowered.per_op["unit"][d_idx].ravel()]
        out["kernel"] = [KERNEL_NAMES[int(k)] for k in self.lowered.per_op["kernel"][d_idx].ravel()]
        out["repeat"] = np.tile(self.repeat, n)
        for f in COST_DTYPE.names:
            out[f] = self.detail[f].ravel()
        return out


def configs(device=0, batch=1, q=1, past=0) -> np.ndarray:
    """Configurations as a CONFIG_DTYPE record array (arguments broadcast against each other)."""
    return records(CONFIG_DTYPE, device=device, batch=batch, q=q, past=past)


def price(lowered: Lowered, cfg: np.ndarray | None = None, *, detail: bool = False, **columns) -> CostTable:
    """Price ``lowered`` at configurations: a CONFIG_DTYPE record array, or its fields by name
    (``price(lw, device=0, batch=[1, 8], q=1, past=1023)``; missing fields take
    :func:`configs`' defaults)."""
    if cfg is None:
        cfg = configs(**columns)
    elif columns:
        raise InputError("give configurations either as a record array or by field, not both")
    try:
        cfg = np.ascontiguousarray(cfg, dtype=CONFIG_DTYPE)
    except (TypeError, ValueError) as e:
        raise InputError(f"configurations must be a record array of {', '.join(CONFIG_DTYPE.names)}: {e}") from None
    n, n_ops = len(cfg), len(lowered.ops)
    if n and (cfg["device"].min() < 0 or cfg["device"].max() >= len(lowered.devices)):
        raise InputError(f"configuration device index out of range 0..{len(lowered.devices) - 1}")
    if n and not (np.all(cfg["batch"] >= 1) and np.all(cfg["q"] >= 1) and np.all(cfg["past"] >= 0)
                  and np.isfinite(cfg["past"]).all() and np.isfinite(cfg["batch"]).all() and np.isfinite(cfg["q"]).all()):
        raise InputError("configurations need finite batch >= 1, q >= 1 and past >= 0")
    totals = np.zeros((n, N_TOTALS))
    det = np.zeros((n if detail else 0, n_ops, N_TERMS))
    if not price_kernel.signatures and n * n_ops <= _interpret_left[0]:
        _interpret_left[0] -= n * n_ops
        interpreted(price_kernel)(*as_rows(lowered.ops, lowered.per_op, lowered.device, cfg), totals, det)
    else:
        price_kernel(lowered.ops, lowered.per_op, lowered.device, cfg, totals, det)
    return CostTable(lowered, cfg, totals.view(TOTAL_DTYPE).reshape(n),
                     det.view(COST_DTYPE).reshape(n, n_ops) if detail else None)


__all__ = ["AssignedModel", "assign", "assign_table", "lower", "Lowered", "price", "configs", "CostTable",
           "op_cost", "price_kernel", "iteration_kernel"]


def clear_memos() -> None:
    """Forget every memoised set-up result (devices, op tables, assignments, lowerings): the next
    question pays the full set-up cost again. For benchmarks and tests; answers never depend on it."""
    import hwmodels.spec
    import sim.assign
    import sim.lowering
    import workloads.optable

    hwmodels.spec._load.cache_clear()
    workloads.optable.model_rows.cache_clear()
    sim.assign._MEMO.clear()
    sim.lowering._MEMO.clear()
