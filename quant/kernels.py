"""Fused single-pass CPU kernels (Numba) for the common formats.

:func:`try_quantize` takes MX (MXINT, MXFP) and absmax-scaled symmetric INT/FP formats (group,
channel, tensor) with ``even``/``nearest``/``floor`` rounding on NumPy arrays and CPU torch
tensors; everything else returns None and goes to the vectorised path of :mod:`quant.quantize`.

The kernel performs the same operations as the vectorised path: power-of-two scalings and
rounding are exact, so they run in float64; the two inexact operations of the scaled formats
(``amax / max`` and ``x / scale``, ``value * scale``) run in float32 as there. Tests check the
two paths bit for bit. Blocks are independent and run in parallel (``numba.set_num_threads``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

MX_FLOAT, MX_INT, SCALED_FLOAT, SCALED_INT = range(4)
_F32_MAX = float(np.finfo(np.float32).max)
ROUND_CODES = {"even": 0, "nearest": 1, "floor": 2}


_RNE = 6755399441055744.0  # 1.5 * 2^52: (t + _RNE) - _RNE rounds t (|t| < 2^51) half to even, exactly


@numba.njit(cache=True, inline="always")
def _round(t, rounding):
    if rounding == 0:
        return (t + _RNE) - _RNE
    if rounding == 1:
        return np.floor(t + 0.5)
    return np.floor(t)


@numba.njit(cache=True, inline="always")
def _float_element(a, ex, emin, mbits, top, pw_up, pw_down, rounding):
    """Magnitude ``a`` > 0 with floor(log2 a) = ``ex`` rounded to the ExMy grid (float64, exact).

    pw_up[k] = 2^(M - e), pw_down[k] = 2^(e - M) for e = emin + k (tables avoid libm calls)."""
    if ex >= pw_up.shape[0] + emin:  # above the top binade: saturates
        return top
    k = max(ex, emin) - emin
    return min(_round(a * pw_up[k], rounding) * pw_down[k], top)


@numba.njit(cache=True, parallel=True)
def qdq_blocks(x, bits, out, g, mode, emax, emin, mbits, top, frac, qmax, rounding, pw_up, pw_down):
    """Quantize-dequantize each block of ``g`` along the last axis of 2-D float32 ``x`` into ``out``.

    ``bits`` is ``x`` viewed as uint32 (exponents are read from it, not computed)."""
    rows, n = x.shape
    nb = (n + g - 1) // g
    is_float = mode == MX_FLOAT or mode == SCALED_FLOAT
    top32 = np.float32(top)
    up_frac = 2.0 ** frac
    down_frac = 2.0 ** -frac
    for idx in numba.prange(rows * nb):
        r = idx // nb
        s = (idx % nb) * g
        stop = min(s + g, n)
        amax = np.float32(0.0)
        bad = False
        for i in range(s, stop):
            av = abs(x[r, i])
            if not av <= _F32_MAX:  # Inf or NaN (a NaN compares false)
                bad = True
                break
            if av > amax:
                amax = av
        if bad:
            for i in range(s, stop):
                out[r, i] = np.nan
            continue
        if mode == MX_FLOAT or mode == MX_INT:
            shared = 0
            if amax > 0:
                shared = min(max(math.frexp(amax)[1] - 1 - emax, -127), 127)
            inv = math.ldexp(1.0, -shared)
            sc = math.ldexp(1.0, shared)
            if is_float:
                for i in range(s, stop):
                    p = np.float64(x[r, i]) * inv
                    a = abs(p)
                    val = 0.0
                    if a != 0.0:
                        ebits = (bits[r, i] >> 23) & 0xFF
                        ex = np.int64(ebits) - 127 - shared if ebits > 0 else math.frexp(a)[1] - 1
                        val = _float_element(a, ex, emin, mbits, top, pw_up, pw_down, rounding)
                    out[r, i] = np.float32(math.copysign(val, p) * sc)
            else:
                up = up_frac * inv  # one multiplication: x * 2^-shared * 2^frac, exact
                down = down_frac * sc
                for i in range(s, stop):
                    p = np.float64(x[r, i])
                    val = min(_round(abs(p) * up, rounding), qmax) * down
                    out[r, i] = np.float32(math.copysign(val, p))
        else:
            scale = amax / top32
            if not scale > 0:
                scale = np.float32(1.0)
            for i in range(s, stop):
                p = x[r, i] / scale
                a = abs(np.float64(p))
                if a == 0.0:
                    val = 0.0
                elif is_float:
                    val = _float_element(a, math.frexp(a)[1] - 1, emin, mbits, top, pw_up, pw_down, rounding)
                else:
                    val = min(_round(a * up_frac, rounding), qmax) * down_frac
                out[r, i] = np.float32(math.copysign(val, p)) * scale


def _mode(f):
    if f.family == "mxfp":
        return MX_FLOAT
    if f.family == "mxint":
        return MX_INT
    if f.family == "fp" and not f.mse:
        return SCALED_FLOAT
    if f.family == "int" and not f.mse and not f.asymmetric:
        return SCALED_INT
    return None


def try_quantize(x, f, axis, rounding, ops):
    """Run the fused kernel if it covers this (format, rounding, array); else return None."""
    mode = _mode(f)
    if mode is None or rounding not in ROUND_CODES:
        return None
    if ops.name == "numpy":
        v = np.moveaxis(np.asarray(x, dtype=np.float32), axis, -1)
    elif x.device.type == "cpu":
        v = ops.to_f32(x).movedim(axis, -1).contiguous().numpy()
    else:
        return None
    shape = v.shape
    n = shape[-1]
    if f.granularity == "tensor":
        v2, g = np.ascontiguousarray(v).reshape(1, -1), v.size
    else:
        v2 = np.ascontiguousarray(v).reshape(-1, n)
        g = n if f.granularity == "channel" else min(f.block, n)
    out = np.empty_like(v2)
    es = np.arange(f.emin, max(f.emax, f.emin) + 1)
    qdq_blocks(v2, v2.view(np.uint32), out, g, mode, f.emax, f.emin, f.mbits, float(f.max_normal), f.frac_bits,
               float(f.qmax), ROUND_CODES[rounding], np.exp2(f.mbits - es), np.exp2(es - f.mbits))
    out = np.moveaxis(out.reshape(shape), -1, axis)
    if ops.name == "numpy":
        return out.astype(x.dtype, copy=False)
    return ops.torch.from_numpy(np.ascontiguousarray(out)).to(x.dtype)
