"""Which compute unit an op runs on (DESIGN.md's compute-precision rule).

An op runs natively on a device unit that accepts both its weight format and its activation
format (``Format.unit_keys`` vs ``ComputeUnit.accepts``); among such units the fastest wins.
Otherwise it is up-cast: the operands are dequantized and the op runs on the device's 16-bit
unit (bf16, else fp16; fp32 when an operand is fp32). Either way the bytes moved are those of
the stored formats, so W4A16 runs on bf16 units but reads 4.25-bit weights for ``mxint4_32``.
Element-wise ops run on the non-tensor (``vector``) units.
"""

from __future__ import annotations

from functools import lru_cache

from hwmodels.spec import DeviceSpec
from quant.formats import parse_format

VECTOR = "vector"


def compute_unit(device: DeviceSpec, weight: str, act: str) -> str:
    """The unit kind (a key of ``device.units``) that runs a matmul with these operand formats."""
    return _compute_unit(device.name, tuple(sorted((k, u.accepts, u.peak_flops) for k, u in device.units.items())),
                         weight, act, device.high_unit)


@lru_cache(maxsize=4096)
def _compute_unit(_name, units, weight, act, high_unit):
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
