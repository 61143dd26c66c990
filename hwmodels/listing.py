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


def devices_table() -> pd.DataFrame:
    """One row per bundled device: memory, bandwidth, dense peaks (TFLOP/s), power, architecture and
    whether its kernel constants are fitted, transferred or estimated."""
    rows = []
    for name in bundled_devices():
        d = load_device(name)
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
