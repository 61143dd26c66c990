"""Lowering: the one place where an op meets a device.

:func:`lower` turns an assigned model (op table with formats, :class:`sim.assign.AssignedModel`)
and a list of devices into per-(device, op) hardware parameters (:data:`sim.fields.LOWERED_FIELDS`)
and per-device parameters (:data:`sim.fields.DEVICE_FIELDS`):

* **compute unit** (docs/DESIGN.md's compute-precision rule): a matmul runs natively on a unit that
  accepts both its weight format and its activation format (``Format.unit_keys`` vs
  ``ComputeUnit.accepts``), the fastest such unit if several do; otherwise it is up-cast, i.e.
  dequantized and run on the device's 16-bit unit (bf16, else fp16; fp32 when an operand is fp32).
  Either way the bytes moved are those of the stored formats, so W4A16 runs on bf16 units but
  reads 4.25-bit weights for ``mxint4_32``. Element-wise ops, softmax and embedding gathers run on
  the non-tensor ``vector`` units.
* **kernel** (:data:`KERNELS`): which kind of kernel runs the op. With fused (FlashAttention-style)
  attention the ``qk``, softmax and ``av`` rows are one kernel: one launch (on ``qk``) and the
  scores never reach memory; unfused, each is its own kernel and the scores are written and read.
* **rate** (achieved FLOP/s = peak x efficiency of the unit), MMA tile rows, **launches**, and the
  device's achieved bandwidth and launch cost (CUDA-graph or eager).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hwmodels.kernels import KERNEL_FAMILIES, check_choice, default_kernel, kernel_params
from hwmodels.power import power_model
from hwmodels.spec import UNIT_ACCEPTS, DeviceSpec
from sim.engines import DEFAULT_ENGINE, attention_glue, check_engine, ew_plan, merge_followers
from quant.formats import parse_format
from sim.fields import DEVICE_DTYPE, LOWERED_DTYPE, records
from workloads.optable import AV, COLLECTIVES, COMM, EMBED, EXPERT, KIND_NAMES, LINEAR, QK, SOFTMAX, VECTOR

if TYPE_CHECKING:
    from sim.assign import AssignedModel

#: Compute-unit codes: the device unit kinds, then the non-tensor units of element-wise ops.
VECTOR_UNIT = "vector"
UNIT_NAMES = (*UNIT_ACCEPTS, VECTOR_UNIT)

#: Kernel kinds (code = position): name -> what it is. The GEMM kernel families and their
#: constants are data (hwmodels/kernels.yaml); the rest are the non-GEMM kernels.
KERNELS = {k: v["doc"] for k, v in KERNEL_FAMILIES.items()}
KERNEL_NAMES = tuple(KERNELS)
_ELEMENTWISE_KINDS = (VECTOR, SOFTMAX, EMBED, COMM)


def compute_unit(device: DeviceSpec, weight: str, act: str) -> str:
    """The unit kind (a key of ``device.units``) that runs a matmul with these operand formats."""
    return _compute_unit(tuple(sorted((k, u.accepts, u.peak_flops) for k, u in device.units.items())),
                         weight, act, device.high_unit)


@lru_cache(maxsize=4096)
def _compute_unit(units, weight, act, high_unit):
    w, a = parse_format(weight), parse_format(act)
    best, best_peak = None, -1.0
    for kind, accepts, peak in units:
        if set(w.unit_keys) & set(accepts) and set(a.unit_keys) & set(accepts) and peak > best_peak:
            best, best_peak = kind, peak
    if best is not None:
        return best
    if "fp32" in (w.name, a.name) and any(k == "fp32" for k, _, _ in units):
        return "fp32"
    return high_unit


def _native(device: DeviceSpec, unit: str, weight: str, act: str) -> bool:
    acc = set(device.units[unit].accepts)
    return bool(set(parse_format(weight).unit_keys) & acc and set(parse_format(act).unit_keys) & acc)


def gemm_class(weight: str, act: str) -> str:
    """The operand class a ``--kernel`` choice is keyed by: ``w{bits}a{bits}`` (element bits), e.g.
    ``w4a16`` for int4_g128 weights and bf16 activations, ``w8a8`` for fp8 or int8 on both."""
    return f"w{parse_format(weight).element_bits}a{parse_format(act).element_bits}"


def _block_fp8(device: DeviceSpec, w, a) -> bool:
    """fp8 operands with per-group scales along k (DeepSeek-style 1x128 / 128x128 blocks) on a device
    with fp8 tensor cores: they run there, the scales applied per k-block (not up-cast)."""
    return ("fp8" in device.units and all(f.family == "fp" and f.element_bits == 8 for f in (w, a))
            and "group" in (w.granularity, a.granularity))


def gemm_runs(device: DeviceSpec, unit: str, weight: str, act: str) -> str:
    """How a GEMM runs (a key of hwmodels/kernels.yaml ``defaults``): ``native`` (a unit takes both
    formats, per-tensor or MX block scales), ``native_scaled`` (fp8/int8 with per-row/column or
    group scales applied in the epilogue), ``weight_only`` (low weights, 16-bit activations: a
    mixed-input kernel), ``upcast`` (both low, no unit for them: dequantized to the 16-bit unit),
    ``block_scaled`` (fp8 with per-group scales on the fp8 unit)."""
    w, a = parse_format(weight), parse_format(act)
    if _block_fp8(device, w, a):
        return "block_scaled"
    if _native(device, unit, weight, act):
        scaled = {w.granularity, a.granularity} & {"channel", "group"} and w.family not in ("mxint", "mxfp")
        return "native_scaled" if scaled else "native"
    return "weight_only" if a.is_high_precision and not w.is_high_precision else "upcast"


def op_unit_kernel(device: DeviceSpec, kind: int, weight: str, act: str, fused_attention: bool,
                   choices=None, ew: int = 0, engine: str = DEFAULT_ENGINE) -> tuple[str, str]:
    """(compute unit, kernel) of one op row on ``device``; ``choices`` maps a :func:`gemm_class`
    (``w4a16``) to the GEMM kernel the user chose for it."""
    if kind in _ELEMENTWISE_KINDS:
        unit = VECTOR_UNIT
    else:
        unit = compute_unit(device, weight, act)
    if kind in (QK, AV, SOFTMAX):
        kern = "flash_attention" if fused_attention else ("softmax" if kind == SOFTMAX else "attention_gemm")
    elif kind == EMBED:
        kern = "gather"
    elif kind == COMM:
        kern = "collective"
    elif kind == VECTOR:
        kern = ew_plan(engine, ew)[0]
    else:
        runs = gemm_runs(device, unit, weight, act)
        if runs == "block_scaled":
            unit = "fp8"
        kern = default_kernel(runs, unit)
        chosen = (choices or {}).get(gemm_class(weight, act))
        if chosen is not None:
            check_choice(chosen, runs, f"{gemm_class(weight, act)} ({weight} x {act}) on {device.name}")
            kern = chosen
    return unit, kern


def check_choices_used(models, kernels: dict | None) -> None:
    """Refuse a ``--kernel`` choice for an operand class that no GEMM of the models has (it would
    be silently ignored)."""
    from mpqsim import InputError

    have = {gemm_class(w, a) for m in models for kind, w, a, _ in m.op_formats if kind in (LINEAR, EXPERT)}
    for cls in sorted(set(kernels or {}) - have):
        raise InputError(f"--kernel {cls}={kernels[cls]}: no GEMM of the model is {cls} under the chosen "
                         f"precision(s); classes here: {', '.join(sorted(have))}")


def parse_kernel_choices(text: str | None) -> dict:
    """``"w4a16=tinygemm,w8a8=cublas_rowwise"`` -> {"w4a16": "tinygemm", ...} (validated names)."""
    from mpqsim import InputError

    out = {}
    for part in filter(None, (text or "").split(",")):
        cls, sep, kern = part.strip().partition("=")
        if not sep or not re.fullmatch(r"w\d+a\d+", cls.strip()):
            raise InputError(f"--kernel {part!r}: expected CLASS=KERNEL, e.g. w4a16=tinygemm "
                             f"(kernels: {', '.join(KERNEL_FAMILIES)})")
        if kern.strip() not in KERNEL_FAMILIES:
            raise InputError(f"--kernel {part!r}: unknown kernel {kern.strip()!r}; valid: {', '.join(KERNEL_FAMILIES)}")
        out[cls.strip()] = kern.strip()
    return out


def _launches(kind: int, kernel: str) -> float:
    """A fused attention kernel is launched once per layer, on its ``qk`` row."""
    return 0.0 if kernel == "flash_attention" and kind in (SOFTMAX, AV) else 1.0


@dataclass(frozen=True)
class Lowered:
    """An assigned model on a list of devices: what :func:`sim.costmodel.price` prices.

    ``per_op`` is (devices x ops) of :data:`sim.fields.LOWERED_DTYPE`, ``device`` (devices,) of
    :data:`sim.fields.DEVICE_DTYPE`; ``units`` / ``kernels`` name each op's unit and kernel.
    """

    model: "AssignedModel"
    devices: tuple
    per_op: np.ndarray
    device: np.ndarray
    eager: bool
    fused_attention: bool
    kernel_choices: tuple = ()
    engine: str = DEFAULT_ENGINE

    @property
    def ops(self) -> np.ndarray:
        return self.model.ops

    def units(self, d: int = 0) -> list[str]:
        return [UNIT_NAMES[int(u)] for u in self.per_op["unit"][d]]

    def kernels(self, d: int = 0) -> list[str]:
        return [KERNEL_NAMES[int(k)] for k in self.per_op["kernel"][d]]


_MEMO: dict = {}
_MEMO_SIZE = 512


def lower(model: "AssignedModel", devices, eager: bool = False, fused_attention: bool = True,
          kernels: dict | None = None, engine: str = DEFAULT_ENGINE) -> Lowered:
    """Per-(device, op) and per-device parameters of ``model`` (an AssignedModel) on ``devices``;
    ``kernels`` maps a GEMM class (``w4a16``) to a chosen kernel (else each device's default);
    ``engine`` (sim/engines.yaml) says how element-wise ops run; ``eager`` launches kernels one by
    one instead of from a CUDA graph.

    Memoised on the model object (assigned models are immutable) and the devices' contents.
    """
    devices = tuple(devices)
    choices = tuple(sorted((kernels or {}).items()))
    key = (id(model), devices, bool(eager), bool(fused_attention), choices, check_engine(engine))
    hit = _MEMO.get(key)
    if hit is not None and hit.model is model:  # the entry holds the model, so its id is not reused
        return hit
    low = _lower(model, devices, eager, fused_attention, choices, engine)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[key] = low
    return low


def _lower(model, devices: tuple, eager: bool, fused_attention: bool, choices: tuple, engine: str) -> Lowered:
    rows = model.op_formats
    per_op = np.zeros((len(devices), len(rows)), dtype=LOWERED_DTYPE)
    for d, dev in enumerate(devices):
        seen: dict[tuple, tuple] = {}  # ops of one kind and formats lower alike
        for j, r in enumerate(rows):
            if r not in seen:
                seen[r] = _lower_op(dev, *r, fused_attention, dict(choices), engine)
            per_op[d][j] = seen[r]
        for j in np.flatnonzero(model.ops["kind"] == COMM):  # collectives: priced on the device's links
            _lower_comm(per_op[d], j, dev, model.ops[j], model.layout, engine)
        for j in merge_followers(model.rows, getattr(model.spec, "names", None), engine):
            per_op[d][j]["launches"] = 0.0  # part of the group's one GEMM (sim/engines.yaml merged_gemms)
    pms = [power_model(dev) for dev in devices]
    device = records(DEVICE_DTYPE,
                     bandwidth=[dev.bandwidth * dev.eff_memory for dev in devices],
                     launch_s=[dev.launch_eager_s if eager else dev.launch_s for dev in devices],
                     tdp_w=[dev.tdp_w for dev in devices], idle_w=[dev.idle_w for dev in devices],
                     cap_w=[p.cap_w for p in pms], static_w=[p.static_w for p in pms],
                     e_dram=[p.e_dram for p in pms], e_onchip=[p.e_onchip for p in pms],
                     kappa=[p.kappa for p in pms], s_max=[p.s_max for p in pms], s_min=[p.s_min for p in pms],
                     clock_hz=[p.peak_clock_hz for p in pms], l2_bytes=[dev.l2_bytes for dev in devices])
    for a in (per_op, device):
        a.setflags(write=False)
    return Lowered(model, devices, per_op, device, eager, fused_attention, choices, engine)


def kernel_rate_stream(dev: DeviceSpec, unit: str, kp) -> tuple[float, float]:
    """(achieved FLOP/s, streaming factor on the device's achieved bandwidth) of kernel ``kp`` on ``unit``.

    Fitted constants (``kp.relative``: fitted here or transferred) are fractions of the **datasheet**
    peaks, so that a device of the same architecture that was never measured scales them by its own
    datasheet numbers, and no kernel streams faster than the device's own achieved bandwidth
    (``efficiency.memory``: a GDDR6 part reaches less of its datasheet rate than an HBM one);
    estimated ones multiply the device file's efficiencies (the uncalibrated roofline)."""
    if unit == VECTOR_UNIT:
        # a latency-bound kernel (occupancy roof) streams at most at the device's own achieved rate
        relative = kp.relative and kp.thread_mbs <= 0.0
        return dev.vector_flops * dev.eff_vector * kp.compute, (min(kp.stream / dev.eff_memory, 1.0) if relative
                                                                else kp.stream)
    if kp.relative:  # no faster than the device's own achieved streaming bandwidth
        return dev.peak(unit) * kp.compute, min(kp.stream / dev.eff_memory, 1.0)
    return dev.peak(unit) * dev.compute_efficiency(unit) * kp.compute, kp.stream


def occupancy_rate(dev: DeviceSpec, kp) -> float:
    """Bytes/s a latency-bound kernel moves with every resident thread waiting on memory (Little's
    law: resident threads x bytes in flight per thread / latency = SMs x max_threads_per_sm x the
    kernel's per-thread rate ``thread_mbs``); 0 where the kernel has no such roof."""
    return dev.compute_units * dev.max_threads_per_sm * kp.thread_mbs * 1e6


def _kernel_fields(dev: DeviceSpec, unit: str, kind: int, kp, wbytes: float = 0.0) -> dict:
    """The LOWERED fields that come from a kernel's constants ``kp`` for an op of ``kind`` on ``unit``
    whose weights take ``wbytes`` bytes per element (the k-loop floor streams them: it scales by
    ``wbytes`` over the bytes the family's floor was fitted on, hwmodels/kernels.yaml ``bytes``)."""
    rate, stream = kernel_rate_stream(dev, unit, kp)
    gemm = kind in (LINEAR, EXPERT)  # a GEMM kernel family: tiles, waves, dequantization
    ref = KERNEL_FAMILIES[kp.kernel].get("bytes", 0)
    kloop = kp.kloop_s * (wbytes / ref) if (ref and wbytes > 0) else kp.kloop_s
    return dict(rate=rate, stream=stream, fixed_s=kp.fixed_s, split_k=kp.split_k, split_fill=kp.split_fill, kloop_s=kloop,
                occupancy=occupancy_rate(dev, kp),
                tile_m=kp.tile_m if gemm else (0.0 if unit == VECTOR_UNIT else dev.eff_m_min),
                tile_n=kp.tile_n if gemm else 0.0, dequant_rate=kp.dequant * dev.dequant_ops if gemm else 0.0,
                dequant_rows=kp.dequant_rows if gemm else 0.0)


def _decode_fields(dev: DeviceSpec, unit: str, dp) -> dict:
    """The paged-decode kernel's fields of a fused-attention op (a decode step runs it instead)."""
    rate, stream = kernel_rate_stream(dev, unit, dp)
    return dict(dec_rate=rate, dec_stream=stream, dec_fixed_s=dp.fixed_s)


def _lower_op(dev: DeviceSpec, kind: int, weight: str, act: str, ew: int, fused_attention: bool, choices: dict,
              engine: str) -> tuple:
    """One LOWERED_DTYPE record (as a tuple in field order) for an op of this kind and formats."""
    unit, kern = op_unit_kernel(dev, kind, weight, act, fused_attention, choices, ew, engine)
    launches, traffic = ew_plan(engine, ew)[1:] if kind == VECTOR else (_launches(kind, kern), 1.0)
    glue = attention_glue(engine) if kind == QK else 0.0  # KV-cache writes, layout copies: once per layer
    rec = dict(unit=UNIT_NAMES.index(unit), kernel=KERNEL_NAMES.index(kern),
               peak=dev.vector_flops if unit == VECTOR_UNIT else dev.peak(unit), sms=float(dev.compute_units),
               launches=launches, traffic=traffic, glue=glue,
               glue_fixed_s=kernel_params("pointwise", dev.architecture).fixed_s,
               dec_rate=0.0, dec_stream=0.0, dec_fixed_s=0.0,
               materialise_scores=0.0 if kern == "flash_attention" else 1.0,
               e_flop=power_model(dev).e_flop[unit], comm_a1=0.0, comm_b1=0.0, comm_a2=0.0, comm_b2=0.0, e_link=0.0,
               **_kernel_fields(dev, unit, kind, kernel_params(kern, dev.architecture),
                                parse_format(weight).bytes_per_element if kind in (LINEAR, EXPERT) else 0.0))
    if kern == "flash_attention":
        rec.update(_decode_fields(dev, unit, kernel_params("paged_decode", dev.architecture)))
    return tuple(rec[f] for f in LOWERED_DTYPE.names)


def _lower_comm(per_op, j: int, dev: DeviceSpec, op, layout, engine: str) -> None:
    """A comm op's fields: the collective's time lines on ``dev``'s interconnect (sim/collectives.py),
    no launch of its own (the measured times include it). A send/recv between pipeline stages
    crosses nodes when the stages' tensor-parallel groups fill them."""
    from sim.collectives import lowered_terms, per_node

    coll = COLLECTIVES[int(op["collective"])]
    n = int(op["group"])
    p = (layout.devices_per_node if layout is not None else None) or per_node(dev.interconnect)
    if coll == "send_recv":
        tp = layout.tp if layout is not None else 1
        p = 2 if tp * (layout.pp if layout is not None else 1) <= p else 1
    from sim.engines import all_reduce_kind

    a1, b1, a2, b2, e_link = lowered_terms(dev.interconnect, coll, n, p, oneshot=all_reduce_kind(engine) == "oneshot")
    r = per_op[j]
    r["comm_a1"], r["comm_b1"], r["comm_a2"], r["comm_b2"], r["e_link"] = a1, b1, a2, b2, e_link
    r["launches"] = 0.0
    r["glue"] = 0.0


def with_kernel_params(lowered: Lowered, params: dict) -> Lowered:
    """``lowered`` with other constants for some kernels: ``params`` maps (architecture, kernel) ->
    KernelParams (what a calibration fit varies). ``paged_decode`` constants go to the decode fields
    of fused-attention ops."""
    per_op = lowered.per_op.copy()
    for d, dev in enumerate(lowered.devices):
        for j, kind in enumerate(lowered.ops["kind"]):
            r = per_op[d, j]
            kern, unit = KERNEL_NAMES[int(r["kernel"])], UNIT_NAMES[int(r["unit"])]
            kp = params.get((dev.architecture, kern))
            if kp is not None:
                wb = float(lowered.ops["wbytes"][j]) if int(kind) in (LINEAR, EXPERT) else 0.0
                for f, v in _kernel_fields(dev, unit, int(kind), kp, wb).items():
                    r[f] = v
            dp = params.get((dev.architecture, "paged_decode")) if kern == "flash_attention" else None
            if dp is not None:
                for f, v in _decode_fields(dev, unit, dp).items():
                    r[f] = v
    per_op.setflags(write=False)
    from dataclasses import replace

    return replace(lowered, per_op=per_op)


__all__ = ["lower", "Lowered", "compute_unit", "op_unit_kernel", "gemm_class", "gemm_runs", "parse_kernel_choices",
           "check_choices_used", "kernel_rate_stream", "with_kernel_params", "KERNELS", "KERNEL_NAMES", "UNIT_NAMES", "VECTOR_UNIT",
           "KIND_NAMES"]
