"""GEMM kernel families and their constants per architecture (``hwmodels/kernels.yaml``, data).

:func:`kernel_params` gives a device's :class:`KernelParams` for a kernel: the architecture's
estimates, overridden by its fitted calibration (``hwmodels/calibration/<arch>.json``) where one
exists; :func:`default_kernel` says which kernel runs an operand pairing (``native``,
``native_scaled``, ``weight_only``, ``upcast``) unless the user chooses (``--kernel w4a16=tinygemm``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from mpqsim import InputError, choices_hint

_DOC = yaml.safe_load((resources.files("hwmodels") / "kernels.yaml").read_text())
KERNEL_FAMILIES: dict[str, dict] = _DOC["kernels"]
DEFAULTS: dict[str, str] = _DOC["defaults"]
ARCHITECTURES: tuple[str, ...] = tuple(_DOC["constants"])
RUNS = ("native", "native_scaled", "weight_only", "upcast")
CONSTANTS = ("stream", "fixed_us", "tile_m", "tile_n", "compute", "dequant")


@dataclass(frozen=True)
class KernelParams:
    """One kernel's constants on one architecture (see ``hwmodels/kernels.yaml`` for their meaning)."""

    kernel: str
    architecture: str
    stream: float
    fixed_s: float
    tile_m: float
    tile_n: float
    compute: float
    dequant: float
    calibrated: bool     # fitted on measurements of this architecture (else an estimate or transfer)
    source: str


def _calibration(arch: str) -> dict:
    p = resources.files("hwmodels") / "calibration" / f"{arch}.json"
    return json.loads(p.read_text()) if p.is_file() else {}


@lru_cache(maxsize=None)
def kernel_params(kernel: str, architecture: str) -> KernelParams:
    if kernel not in KERNEL_FAMILIES:
        raise InputError(f"unknown kernel {kernel!r}; {choices_hint(KERNEL_FAMILIES)}")
    c = dict(_DOC["constants"]["generic"][kernel])
    c.update(_DOC["constants"].get(architecture, {}).get(kernel, {}))
    fitted = _calibration(architecture).get("constants", {}).get(kernel)
    if fitted:
        c.update({k: fitted[k] for k in CONSTANTS}, source=f"calibration/{architecture}.json")
    return KernelParams(kernel, architecture, float(c["stream"]), float(c["fixed_us"]) * 1e-6, float(c["tile_m"]),
                        float(c["tile_n"]), float(c["compute"]), float(c["dequant"]), bool(fitted), str(c["source"]))


def default_kernel(runs: str) -> str:
    return DEFAULTS[runs]


def check_choice(kernel: str, runs: str, what: str) -> None:
    """Refuse a kernel that cannot run this operand pairing (e.g. tinygemm for W8A8)."""
    if kernel not in KERNEL_FAMILIES:
        raise InputError(f"unknown kernel {kernel!r} for {what}; {choices_hint(KERNEL_FAMILIES)}")
    if KERNEL_FAMILIES[kernel]["runs"] != runs:
        ok = [k for k, v in KERNEL_FAMILIES.items() if v["runs"] == runs]
        raise InputError(f"kernel {kernel!r} cannot run {what} ({runs.replace('_', '-')}); valid: {', '.join(ok)}")
