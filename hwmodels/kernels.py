"""GEMM kernel families and their constants per architecture (``hwmodels/kernels.yaml``, data).

:func:`kernel_params` gives a device's :class:`KernelParams` for a kernel: the architecture's
estimates, overridden by its fitted calibration (``hwmodels/calibration/<arch>.json``) where one
exists; :func:`default_kernel` says which kernel runs an operand pairing (``native``,
``native_scaled``, ``weight_only``, ``upcast``) unless the user chooses (``--kernel w4a16=tinygemm``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

import yaml

from mpqsim import InputError, choices_hint

_DOC = yaml.safe_load((resources.files("hwmodels") / "kernels.yaml").read_text())
KERNEL_FAMILIES: dict[str, dict] = _DOC["kernels"]
DEFAULTS: dict[str, str] = _DOC["defaults"]
ARCHITECTURES: tuple[str, ...] = tuple(_DOC["constants"])
RUNS = ("native", "native_scaled", "weight_only", "upcast", "block_scaled")
CONSTANTS = ("stream", "fixed_us", "tile_m", "tile_n", "split_k", "kloop_ns", "compute", "dequant", "thread_mbs",
             "split_fill", "dequant_rows")


@dataclass(frozen=True)
class KernelParams:
    """One kernel's constants on one architecture (see ``hwmodels/kernels.yaml`` for their meaning)."""

    kernel: str
    architecture: str
    stream: float
    fixed_s: float
    tile_m: float
    tile_n: float
    split_k: float
    kloop_s: float
    compute: float
    dequant: float
    calibrated: bool     # fitted on measurements of this architecture (else an estimate or transfer)
    source: str
    relative: bool = False  # constants are fractions of the datasheet peaks (fitted, here or transferred)
    thread_mbs: float = 0.0  # latency-bound streaming rate per resident thread, MB/s (0: no occupancy roof)
    split_fill: float = 1.0  # a lone wave splits k only while the split wave fills <= 1 / split_fill of the SMs
    dequant_rows: float = 0.0  # per-row dequantization kernels: rows of dequant work a call pays beyond m


def _calibration(arch: str) -> dict:
    p = resources.files("hwmodels") / "calibration" / f"{arch}.json"
    return json.loads(p.read_text()) if p.is_file() else {}


@lru_cache(maxsize=None)
def kernel_params(kernel: str, architecture: str) -> KernelParams:
    """The constants of ``kernel`` on ``architecture``: fitted on it (``calibrated``), else fitted on
    the first architecture of its ``transfer_from`` list (kernels.yaml) that has them (transferred:
    fractions of the datasheet peaks, applied to this device's), else the estimates of kernels.yaml."""
    if kernel not in KERNEL_FAMILIES:
        raise InputError(f"unknown kernel {kernel!r}; {choices_hint(KERNEL_FAMILIES)}")
    c = dict(_DOC["constants"]["generic"][kernel])
    c.update(_DOC["constants"].get(architecture, {}).get(kernel, {}))
    fitted_on = next((a for a in (architecture, *_DOC["transfer_from"].get(architecture, ()))
                      if _calibration(a).get("constants", {}).get(kernel)), None)
    like = KERNEL_FAMILIES[kernel].get("like")
    if fitted_on is None and like:  # never measured itself: priced as the kernel it is built like
        return replace(kernel_params(like, architecture), kernel=kernel, calibrated=False,
                       source=f"as {like}: {kernel_params(like, architecture).source}")
    if fitted_on:
        fitted = _calibration(fitted_on)["constants"][kernel]
        c.update({k: fitted.get(k, c.get(k, 1.0 if k == "split_fill" else 0.0)) for k in CONSTANTS},
                 source=f"calibration/{fitted_on}.json")
    return KernelParams(kernel, architecture, float(c["stream"]), float(c["fixed_us"]) * 1e-6, float(c["tile_m"]),
                        float(c["tile_n"]), float(c["split_k"]), float(c.get("kloop_ns", 0.0)) * 1e-9,
                        float(c["compute"]), float(c["dequant"]),
                        fitted_on == architecture, str(c["source"]), relative=fitted_on is not None,
                        thread_mbs=float(c.get("thread_mbs", 0.0)), split_fill=float(c.get("split_fill", 1.0)),
                        dequant_rows=float(c.get("dequant_rows", 0.0)))


def default_kernel(runs: str, unit: str = "") -> str:
    """The kernel that runs a GEMM of this kind (``runs``) on this unit unless the user chooses."""
    d = DEFAULTS[runs]
    return d.get(unit, d["other"]) if isinstance(d, dict) else d


def check_choice(kernel: str, runs: str, what: str) -> None:
    """Refuse a kernel that cannot run this operand pairing (e.g. tinygemm for W8A8)."""
    if kernel not in KERNEL_FAMILIES:
        raise InputError(f"unknown kernel {kernel!r} for {what}; {choices_hint(KERNEL_FAMILIES)}")
    if KERNEL_FAMILIES[kernel]["runs"] != runs:
        ok = [k for k, v in KERNEL_FAMILIES.items() if v["runs"] == runs]
        raise InputError(f"kernel {kernel!r} cannot run {what} ({runs.replace('_', '-')}); valid: {', '.join(ok)}")
