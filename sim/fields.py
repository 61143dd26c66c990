"""The cost model's field registries: every field that flows into or out of its kernels, by name.

Each registry maps a field name to what it holds (units in the text). From a registry come

* a NumPy structured dtype, for inputs: record arrays that the kernels read by field name
  (``op.n``, ``low.rate``, ``dev.bandwidth``, ``cfg.batch``);
* a namedtuple, for per-op outputs: what the per-op count and cost functions return;
* for outputs held in arrays (per-op detail, totals), a record dtype of the same names: a kernel
  copies a namedtuple into a row in registry order and the host reads the row as a record.

Nothing outside this module numbers a field. Adding a cost term is one line in
:data:`COST_TERMS` (and one in :data:`TOTALS` if configurations should sum it) plus its formula in
:func:`sim.costmodel.op_cost`.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from mpqsim import InputError
from workloads.optable import COUNT_FIELDS, SHAPE_FIELDS, Counts

__all__ = ["SHAPE_FIELDS", "COUNT_FIELDS", "Counts", "FORMAT_FIELDS", "OP_FIELDS", "OP_DTYPE",
           "LOWERED_FIELDS", "LOWERED_DTYPE", "DEVICE_FIELDS", "DEVICE_DTYPE", "CONFIG_FIELDS",
           "CONFIG_DTYPE", "COST_TERMS", "Cost", "COST_DTYPE", "TOTALS", "TOTAL_DTYPE", "ITERATION_FIELDS",
           "IterationBatch", "ITERATION_DTYPE", "Iteration", "ITERATION_RESULT_DTYPE", "records"]


def _float_dtype(fields) -> np.dtype:
    return np.dtype([(f, np.float64) for f in fields])


# ---------------------------------------------------------------- inputs
#: Per op, what format assignment adds to the op's shape (bytes per element, scales included).
FORMAT_FIELDS = {
    "wbytes": "bytes per stored weight element (the weight format, scale overhead included)",
    "abytes": "bytes per input-activation element (the activation format)",
    "obytes": "bytes per output element and per bias element (the map's high-precision format)",
    "kvbytes": "bytes per KV-cache element (the KV format)",
}
#: One record per op row: its shape (workloads) and its format bytes (assignment).
OP_FIELDS = SHAPE_FIELDS | FORMAT_FIELDS
OP_DTYPE = _float_dtype(OP_FIELDS)

#: One record per (device, op): how the op runs on that device, decided by :func:`sim.lowering.lower`.
LOWERED_FIELDS = {
    "unit": "compute unit code (index into Lowered.unit_names)",
    "kernel": "kernel code (index into sim.lowering.KERNELS)",
    "rate": "achieved FLOP/s of the unit on large shapes (peak x efficiency)",
    "peak": "dense peak FLOP/s of the unit (what utilisation is measured against)",
    "tile_m": "GEMM rows of one tile: with tile_n > 0 rows are padded to whole tiles; else fewer rows "
              "than tile_m cost a full tile (the smallest MMA tile; 0 = no padding)",
    "tile_n": "GEMM columns of one SM's output tile (0 = no tile or wave quantisation: not a GEMM kernel)",
    "split_k": "ways a GEMM kernel splits k when it has fewer tiles than SMs (1 = never)",
    "split_fill": "a lone wave splits k only while the split wave fills at most 1 / split_fill of the SMs",
    "kloop_s": "s per element of k a lone wave's k-loop takes at least (latency-bound pipeline; 0 = none)",
    "sms": "SMs / CUs the tiles run on in waves",
    "stream": "the kernel's streaming rate as a fraction of the device's achieved bandwidth",
    "fixed_s": "fixed time per call beyond the launch, s (setup, scale epilogues, split-K reductions)",
    "occupancy": "latency-bound streaming rate over all of the op's bytes, bytes/s: resident threads x the "
                 "kernel's per-thread rate (element-wise kernels; 0 = no such roof)",
    "dequant_rate": "weight elements x rows dequantized per second on the compute path (0 = hidden)",
    "dequant_rows": "rows of dequantization a call pays beyond its own m (its pipeline's fill: scales with the weights)",
    "launches": "kernel launches per op instance (0 when fused into another op's kernel; the engine's count for element-wise ops)",
    "dec_rate": "fused attention, decode (one new token): achieved FLOP/s of the paged-decode kernel (0 = same kernel)",
    "dec_stream": "fused attention, decode: the paged-decode kernel's streaming factor (0 = same kernel)",
    "dec_fixed_s": "fused attention, decode: the paged-decode kernel's fixed time per call, s",
    "glue": "small kernels the engine runs around this op per instance (attention: KV-cache writes, layout copies)",
    "glue_fixed_s": "fixed time of one glue kernel beyond its launch, s (a pointwise kernel's)",
    "traffic": "memory traffic of the op's activations as a multiple of its own input + output bytes (engine)",
    "materialise_scores": "1 if attention scores go through memory (unfused attention), else 0",
    "e_flop": "J per FLOP of the unit at the peak clock (s = 1; hwmodels/power.py)",
    "comm_a1": "comm ops: fixed time of the collective's small-message algorithm, s (sim/collectives.py)",
    "comm_b1": "comm ops: its time per byte of buffer, s (0 = not a comm op)",
    "comm_a2": "comm ops: fixed time of its large-message algorithm, s (inf = none)",
    "comm_b2": "comm ops: its time per byte of buffer, s",
    "e_link": "comm ops: J per byte of buffer on the link",
}
LOWERED_DTYPE = _float_dtype(LOWERED_FIELDS)

#: One record per device.
DEVICE_FIELDS = {
    "bandwidth": "achieved memory bandwidth, bytes/s (peak x efficiency)",
    "launch_s": "fixed cost of one kernel launch, s (CUDA-graph or eager, as lowered)",
    "tdp_w": "board power limit of the datasheet, W",
    "idle_w": "idle board power, W",
    "cap_w": "power cap the clock drops to respect, W (tdp_w unless set: --power-cap)",
    "static_w": "power with clocks up and nothing running, W (paid for every second)",
    "e_dram": "J per byte in the DRAM devices (not clock-scaled)",
    "e_onchip": "J per byte through the on-chip path (L2, network, SM load/store) at the peak clock",
    "kappa": "energy per operation ~ s^kappa (s = clock / peak clock)",
    "s_max": "highest clock / peak clock (boost)",
    "s_min": "lowest clock / peak clock",
    "clock_hz": "the peak clock (s = 1), Hz",
    "l2_bytes": "on-chip cache, bytes (an op's activations that fit in it stay on chip)",
}
DEVICE_DTYPE = _float_dtype(DEVICE_FIELDS)

#: One record per configuration priced.
CONFIG_FIELDS = {
    "device": "index of the device in the lowered device list",
    "batch": "sequences",
    "q": "new tokens per sequence (prefill: the prompt or a chunk; decode: 1)",
    "past": "cached tokens per sequence before these (decode at context C: C - 1)",
}
CONFIG_DTYPE = np.dtype([("device", np.int64)] + [(f, np.float64) for f in CONFIG_FIELDS if f != "device"])

# ---------------------------------------------------------------- outputs
#: What :func:`sim.costmodel.op_cost` returns for one op instance at one configuration.
COST_TERMS = {
    "time": "s: (max(t_compute, t_memory) + t_launch) x stretch, at the configuration's clock",
    "t_compute": "s: FLOPs (padded to the MMA tile) at the unit's achieved rate at the configuration's clock",
    "t_memory": "s: bytes at the achieved bandwidth",
    "t_launch": "s: launches x launch cost",
    "time_memory_bound": "s: time if the memory side dominates (t_memory >= t_compute), else 0",
    "time_compute_bound": "s: time if the compute side dominates, else 0",
    "flops": "FLOPs",
    "bytes_w": "bytes of weights (stored format) and biases read",
    "bytes_act": "bytes of activations read and written (attention scores too when materialised)",
    "bytes_kv": "bytes of KV cache read and written",
    "m": "GEMM rows",
    "n": "GEMM columns",
    "k": "GEMM reduction depth",
    "count": "GEMMs of this shape",
    "energy": "J: e_compute + e_dram + e_onchip + e_static",
    "e_compute": "J: FLOPs x the unit's energy per FLOP at the clock",
    "e_dram": "J: bytes to and from DRAM x the DRAM devices' energy per byte",
    "e_onchip": "J: every byte moved (DRAM or L2-resident) x the on-chip path's energy per byte at the clock",
    "e_static": "J: static power x time",
    "clock_time": "Hz s: the SM clock x time (summed, / time = the time-weighted clock)",
}
Cost = namedtuple("Cost", tuple(COST_TERMS))
COST_DTYPE = _float_dtype(COST_TERMS)

#: Per configuration: total name -> (cost term, rule). ``sum``: sum over ops of term x repeat;
#: ``max``: the largest single instance (the activation peak: an op's inputs and outputs live at once).
TOTALS = {
    "time": ("time", "sum"),
    "t_compute": ("t_compute", "sum"),
    "t_memory": ("t_memory", "sum"),
    "t_launch": ("t_launch", "sum"),
    "time_memory_bound": ("time_memory_bound", "sum"),
    "time_compute_bound": ("time_compute_bound", "sum"),
    "flops": ("flops", "sum"),
    "bytes_w": ("bytes_w", "sum"),
    "bytes_act": ("bytes_act", "sum"),
    "bytes_kv": ("bytes_kv", "sum"),
    "act_peak": ("bytes_act", "max"),
    "energy": ("energy", "sum"),
    "e_compute": ("e_compute", "sum"),
    "e_dram": ("e_dram", "sum"),
    "e_onchip": ("e_onchip", "sum"),
    "e_static": ("e_static", "sum"),
    "clock_time": ("clock_time", "sum"),
}
TOTAL_DTYPE = _float_dtype(TOTALS)
RULES = ("sum", "max")
# What the kernels loop over (generated from TOTALS; no hand-kept numbers).
TOTAL_TERM = np.array([tuple(COST_TERMS).index(term) for term, _ in TOTALS.values()], dtype=np.int64)
TOTAL_RULE = np.array([RULES.index(rule) for _, rule in TOTALS.values()], dtype=np.int64)
RULE_SUM, RULE_MAX = (RULES.index(r) for r in RULES)

#: One serving iteration as the scheduler formed it (:func:`sim.costmodel.iteration_kernel`).
ITERATION_FIELDS = {
    "seqs": "sequences in the batch",
    "tokens": "new tokens in the batch, all sequences",
    "n_decode": "decode sequences (one new token each)",
    "decode_ctx_sum": "sum of the decode sequences' contexts (tokens attended, new one included)",
}
IterationBatch = namedtuple("IterationBatch", tuple(ITERATION_FIELDS))
ITERATION_DTYPE = _float_dtype(ITERATION_FIELDS)
#: What one serving iteration costs: seconds, FLOPs, seconds its FLOPs would take at the peak
#: of the units they run on (utilisation = busy_at_peak / time <= 1), joules, and the SM clock (Hz)
#: the power cap allowed.
Iteration = namedtuple("Iteration", ("time", "flops", "busy_at_peak", "energy", "clock_hz"))
#: The kernel writes an Iteration into a one-record array of this dtype (returning a namedtuple
#: to Python would run Python code inside Numba's boxing, where a Ctrl-C can crash the process).
ITERATION_RESULT_DTYPE = _float_dtype(Iteration._fields)


def records(dtype: np.dtype, n=None, **columns) -> np.ndarray:
    """A record array of ``dtype`` from named columns (broadcast to a common length, or ``n``).

    Every field of ``dtype`` must be given and no other name: ``records(CONFIG_DTYPE, device=0,
    batch=[1, 8], q=1, past=1023)``.
    """
    missing = [f for f in dtype.names if f not in columns]
    extra = [f for f in columns if f not in dtype.names]
    if missing or extra:
        raise InputError(f"record fields: missing {missing}, unknown {extra}; fields are {list(dtype.names)}")
    cols = [np.asarray(columns[f]) for f in dtype.names]
    if n is None:
        n = max((c.size for c in cols if c.ndim), default=1)
    rec = np.empty(n, dtype=dtype)
    for f, c in zip(dtype.names, cols):
        if c.ndim and c.size not in (1, n):
            raise InputError(f"record field {f!r} has {c.size} values, expected {n} (or one)")
        try:
            rec[f] = c.ravel() if c.ndim else c
        except (TypeError, ValueError):
            raise InputError(f"record field {f!r} must be numbers, got {c.ravel()[:3].tolist()}") from None
    return rec
