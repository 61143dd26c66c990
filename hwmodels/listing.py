"""A table of the bundled devices (for ``mpqsim devices``)."""

from __future__ import annotations

import pandas as pd

from hwmodels.spec import bundled_devices, load_device

_COLUMNS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp6", "fp4")


def calibration_status(architecture: str) -> str:
    """Where a device's GEMM kernel constants come from: ``<arch> fit`` (fitted on measurements of
    this architecture, not necessarily of this device), ``<arch> fit, transferred`` (borrowed from
    another fitted architecture) or ``estimated``."""
    from hwmodels.kernels import kernel_params

    kp = kernel_params("cublas", architecture)
    src = kp.source.split("/")[-1].removesuffix(".json")
    if kp.calibrated:
        return f"{src} fit"
    return f"{src} fit, transferred" if kp.relative else "estimated"


def _devices(extra=()) -> list:
    return [load_device(n) for n in (*bundled_devices(), *extra)]


def devices_table(extra=()) -> pd.DataFrame:
    """One row per bundled device (and ``extra`` names or paths): memory, bandwidth, dense peaks
    (TFLOP/s), power, architecture and whether its kernel constants are fitted, transferred or estimated."""
    rows = []
    for d in _devices(extra):
        name = d.name
        row = dict(device=name, description=d.description, memory_gb=d.memory_bytes / 1e9,
                   bandwidth_tbs=d.bandwidth / 1e12, l2_mb=d.l2_bytes / 1e6)
        for k in _COLUMNS:
            row[k] = d.peak(k) / 1e12 if k in d.units else float("nan")
        row["mx_units"] = " ".join(f"{k}:{u.peak_flops / 1e12:g}" for k, u in d.units.items()
                                   if k.startswith("mx")) or "-"
        row["tdp_w"] = d.tdp_w
        row["architecture"] = d.architecture
        row["kernels"] = calibration_status(d.architecture)
        rows.append(row)
    return pd.DataFrame(rows)


def power_table(extra=()) -> pd.DataFrame:
    """One row per device: the power model (hwmodels/power.py): TDP and cap, static and idle power,
    clocks, energy per FLOP (bf16 and the narrowest unit) and per byte, and where they come from."""
    from hwmodels.power import power_model

    rows = []
    for d in _devices(extra):
        p = power_model(d)
        low = min((u for u in d.units if u != "fp32"), key=lambda u: p.e_flop[u])
        rows.append(dict(device=d.name, tdp_w=d.tdp_w, cap_w=p.cap_w, static_w=p.static_w, idle_w=p.idle_w,
                         peak_clock_mhz=p.peak_clock_hz / 1e6, boost_clock_mhz=p.s_max * p.peak_clock_hz / 1e6,
                         node_nm=p.node_nm, memory=p.memory_type,
                         pj_per_flop_16bit=p.e_flop[d.high_unit] * 1e12, narrowest=low,
                         pj_per_flop_narrowest=p.e_flop[low] * 1e12, pj_per_byte_dram=(p.e_dram + p.e_onchip) * 1e12,
                         pj_per_byte_onchip=p.e_onchip * 1e12, source=p.source))
    return pd.DataFrame(rows)


def area_table(extra=()) -> pd.DataFrame:
    """One row per device whose die area is known (generated accelerators): mm2 by part, and the
    bf16 TFLOP/s per mm2."""
    rows = []
    for d in _devices(extra):
        if not d.area:
            continue
        rows.append(dict(device=d.name, **{k: v for k, v in d.area.items()},
                         bf16_tflops_per_mm2=d.peak("bf16") / 1e12 / d.area["total"] if "bf16" in d.units else float("nan")))
    return pd.DataFrame(rows).fillna(0.0)
