"""One GEMM on one device: ``price_gemm(device, m, n, k, weight_fmt, act_fmt, kernel=None)``.

``y[m x n] = x[m x k] . W[n x k]^T`` priced through the same three steps as a whole model (a
one-op table -> assign -> lower -> :func:`sim.costmodel.price`), so a single GEMM and a model's
projection at the same shape cost the same. ``m`` may be an array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.kernels import KernelParams, kernel_params
from hwmodels.spec import DeviceSpec, load_device
from quant.formats import parse_format
from quant.precision import OpFormats, PrecisionMap
from sim.assign import assign_table
from sim.costmodel import price
from sim.lowering import KERNEL_NAMES, UNIT_NAMES, gemm_class, lower, with_kernel_params
from workloads.optable import LINEAR, table_from_rows


@dataclass(frozen=True)
class GemmCost:
    """Times (s, arrays over ``m``) of one GEMM and what the model assumed."""

    m: np.ndarray
    n: int
    k: int
    time_s: np.ndarray         # max(t_compute_s, t_memory_s) + launch + the kernel's fixed cost
    t_compute_s: np.ndarray    # tiles and waves at the unit's achieved rate (or per-row dequantization)
    t_memory_s: np.ndarray     # bytes / the kernel's achieved bandwidth
    kernel: str
    unit: str
    bound: np.ndarray          # "memory" or "compute" per m
    calibrated: bool           # the kernel's constants were fitted on this architecture's measurements
    weight_fmt: str
    act_fmt: str
    energy_j: np.ndarray = None     # per GEMM (compute, memory and static)
    clock_mhz: np.ndarray = None    # the SM clock the power cap allows (sustained)

    @property
    def power_w(self) -> np.ndarray:
        """Average board power while it runs, W."""
        return self.energy_j / self.time_s

    @property
    def tflops(self) -> np.ndarray:
        return 2.0 * self.m * self.n * self.k / self.time_s / 1e12

    @property
    def weight_gbps(self) -> np.ndarray:
        return self.n * self.k * parse_format(self.weight_fmt).bytes_per_element / self.time_s / 1e9


def gemm_table(n: int, k: int):
    return table_from_rows([dict(name="gemm", role="linear", kind=LINEAR, n=n, k=k, w_elems=n * k, params=n * k)])


def price_gemm(device: str | DeviceSpec, m, n: int, k: int, weight_fmt: str = "bf16", act_fmt: str | None = None,
               kernel: str | None = None, out_fmt: str = "bf16", params: KernelParams | None = None) -> GemmCost:
    """Price one GEMM. ``act_fmt`` defaults to the weight format if that is high precision, else
    bf16 (weight-only); ``kernel`` chooses the GEMM kernel (else the device's default for the
    operand pairing); ``params`` replaces the kernel's constants (what a calibration fit varies)."""
    dev = load_device(device) if isinstance(device, str) else device
    w = parse_format(weight_fmt)
    a = parse_format(act_fmt) if act_fmt else (w if w.is_high_precision else parse_format("bf16"))
    pmap = PrecisionMap(name="gemm", default=OpFormats.of(out_fmt, out_fmt), roles={"linear": OpFormats(w, a)})
    choices = {gemm_class(w.name, a.name): kernel} if kernel else None
    low = lower(assign_table(gemm_table(int(n), int(k)), pmap), [dev], kernels=choices)
    kern = KERNEL_NAMES[int(low.per_op["kernel"][0, 0])]
    kp = params or kernel_params(kern, dev.architecture)
    if params is not None:
        low = with_kernel_params(low, {(dev.architecture, kern): params})
    m = np.atleast_1d(np.asarray(m, dtype=float))
    ct = price(low, device=0, batch=m, q=1.0, past=0.0, detail=True)
    tc, tm = ct.detail["t_compute"][:, 0], ct.detail["t_memory"][:, 0]
    return GemmCost(m, int(n), int(k), ct["time"], tc, tm, kern, UNIT_NAMES[int(low.per_op["unit"][0, 0])],
                    np.where(tm >= tc, "memory", "compute"), kp.calibrated, w.name, a.name,
                    ct["energy"], ct["clock_time"] / ct["time"] / 1e6)


__all__ = ["price_gemm", "GemmCost"]
