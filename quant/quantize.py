"""Bit-exact quantize-dequantize for every format of :mod:`quant.formats`.

``quantize(x, fmt, axis=-1, rounding="even", generator=None)`` returns Q(x) with the type, shape
and dtype of ``x`` (a NumPy array, or a torch tensor on any device). The semantics are those of
``docs/reference/mx_formats.md`` (OCP MX v1.0 with the rules listed there):

* blocks are contiguous runs of ``block`` elements along ``axis``; a ragged end is zero-padded; a
  block larger than the axis makes the whole axis one block; ``chan`` = one scale per slice
  along ``axis`` (a weight ``(out, in)`` with ``axis=-1``: one per output row); ``tens`` = one scale;
* MX: shared exponent ``floor(log2 amax) - emax_elem`` from the exact exponent (frexp), clamped to
  E8M0's [-127, 127]; elements rounded then saturated to the element's max normal;
* scaled FP/INT: ``scale = amax / max_normal`` (or ``/ qmax``), or the best of
  :data:`~quant.formats.MSE_CLIP_RATIOS` clipping ratios by squared error (``_mse``); asymmetric INT
  maps [min, max] onto 0 .. 2^k - 1 with a rounded zero point;
* codebooks (``nf``, ``dyn``): block absmax normalisation, then the nearest code;
* bf16/fp16: IEEE casts (overflow to Inf, NaN kept); fp32: unchanged;
* an all-zero block gives zeros; NaN or Inf anywhere in a block makes the whole block NaN;
* rounding ``even`` (half to even), ``nearest`` (half away from zero), ``floor`` (toward zero),
  ``stochastic`` (``floor(t + u)``, u uniform from ``generator``: an int seed, a NumPy Generator
  or a torch Generator; None = seed 0, so results are reproducible by default).

Q is idempotent bit for bit where scales are powers of two (MX) and for casts, and for the ``nf``
codebooks under ``even``/``nearest``. With a non-power-of-two scale (scaled INT/FP, codebooks)
re-deriving the scale or dividing by it again costs a float32 rounding, which ``floor`` can turn
into one step down. ``dyn`` has no -1 code, so a block whose largest magnitude is negative rescales.

All arithmetic is float32 (inputs in bf16/fp16/fp64 are converted, the result cast back), and
powers of two are built from their bits, and every division is a correctly rounded
tensor / tensor division (CUDA turns division by a Python scalar into a multiplication by its
reciprocal), so NumPy and torch give identical bits, on the CPU and on a GPU. On the CPU, the
common formats (MX, scaled INT/FP with absmax scales) take a fused Numba kernel
(:mod:`quant.kernels`) that computes the same operations in one pass; tests hold the two equal.
"""

from __future__ import annotations

import numpy as np

from mpqsim import InputError
from quant.backend import ops_for
from quant.formats import MSE_CLIP_RATIOS, Format, parse_format

ROUNDINGS = ("even", "nearest", "floor", "stochastic")


def quantize(x, fmt, axis: int = -1, rounding: str = "even", generator=None):
    """Quantize-dequantize ``x`` to ``fmt`` along ``axis`` (see the module docstring)."""
    f = parse_format(fmt)
    if rounding not in ROUNDINGS:
        raise InputError(f"unknown rounding {rounding!r}; valid: {', '.join(ROUNDINGS)}")
    ops = ops_for(x)
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise InputError(f"axis {axis} does not exist for a tensor with {x.ndim} dimension(s)")
    if f.name == "fp32" or (x.size if ops.name == "numpy" else x.numel()) == 0:
        return x.copy() if ops.name == "numpy" else x.clone()
    if x.ndim == 0:
        return quantize(x.reshape(1), f, 0, rounding, generator).reshape(())
    from quant import kernels

    fast = kernels.try_quantize(x, f, axis, rounding, ops)
    if fast is not None:
        return fast
    v = ops.moveaxis(ops.to_f32(x), axis, -1)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # IEEE overflow to Inf is intended
        out = _quantize_last(v, f, rounding, ops, generator)
    return ops.restore(ops.moveaxis(out, -1, axis), x)


# ---------------------------------------------------------------- the algorithm
def _blocks(v, f: Format, ops):
    """Reshape (..., n) -> (..., nb, g) per the format's granularity; returns (blocks, undo)."""
    shape = v.shape
    n = shape[-1]
    if f.granularity == "tensor":
        flat = v.reshape(1, -1)
        return flat.reshape(1, 1, -1), lambda y: y.reshape(shape)
    g = n if f.granularity == "channel" else min(f.block, n)
    pad = (-n) % g
    b = ops.pad_last(v, pad).reshape(*shape[:-1], (n + pad) // g, g)

    def undo(y):
        y = y.reshape(*shape[:-1], n + pad)
        return y[..., :n] if pad else y

    return b, undo


def _quantize_last(v, f: Format, rounding: str, ops, generator):
    rng = ops.make_rng(generator, v) if rounding == "stochastic" else None
    if f.granularity == "none":  # bf16 / fp16 casts
        return _float_elements(v, f, rounding, ops, rng)
    b, undo = _blocks(v, f, ops)
    amax = ops.amax(ops.abs(b), -1)
    bad = ~ops.isfinite(amax)                    # NaN or Inf somewhere in the block
    amax = ops.where(bad, 0.0, amax)
    b = ops.where(bad, 0.0, b)
    if f.family in ("mxint", "mxfp"):
        out = _mx(b, amax, f, rounding, ops, rng)
    elif f.family == "nvfp":
        out = _nvfp(b, amax, f, rounding, ops, rng)
    elif f.is_codebook:
        scale = ops.where(amax > 0, amax, 1.0)
        out = _codebook(b / scale, f, rounding, ops, rng) * scale
    elif f.asymmetric:
        out = _asym_int(b, f, rounding, ops, rng)
    else:
        out = _scaled(b, amax, f, rounding, ops, rng)
    return undo(ops.where(bad, float("nan"), out))


def _round(t, rounding: str, ops, rng):
    """Round non-negative ``t`` to integers."""
    if rounding == "even":
        return ops.rint(t)
    if rounding == "nearest":
        return ops.floor(t + 0.5)
    if rounding == "floor":
        return ops.floor(t)
    return ops.floor(t + ops.uniform(t.shape, rng, t))


def _float_elements(p, f: Format, rounding: str, ops, rng):
    """Round to the ExMy grid (subnormals kept); saturate, or overflow to Inf for IEEE casts."""
    a = ops.abs(p)
    m, big_e = ops.frexp(a)                       # a = m * 2^E, m in [0.5, 1)
    e = ops.maximum(big_e - 1, f.emin)            # exponent of a's binade, clamped at emin
    t = m * ops.exp2i(ops.clip_int(big_e - e + f.mbits, -149, 127))   # a / 2^(e - M), exactly
    val = _round(t, rounding, ops, rng) * ops.exp2i(e - f.mbits)
    if not f.ieee:
        return ops.copysign(ops.minimum(val, f.max_normal), p)
    val = ops.copysign(ops.where(val > f.max_normal, float("inf"), val), p)
    return ops.where(ops.isfinite(p), val, p)  # Inf stays Inf; NaN keeps its own bits


def _int_elements(p, f: Format, rounding: str, ops, rng):
    """Symmetric integer grid j * 2^-frac_bits, |j| <= qmax (the most negative code unused)."""
    a = ops.abs(p) * float(2 ** f.frac_bits)
    j = ops.minimum(_round(a, rounding, ops, rng), float(f.qmax))
    return ops.copysign(j * float(2.0 ** -f.frac_bits), p)


def _elements(p, f, rounding, ops, rng):
    return (_float_elements if f.is_float_element else _int_elements)(p, f, rounding, ops, rng)


def _mx(b, amax, f: Format, rounding, ops, rng):
    shared = ops.clip_int(ops.frexp_exp(amax) - 1 - f.emax, -127, 127)   # floor(log2 amax) - emax
    shared = ops.where(amax > 0, shared, 0 * shared)
    p = b * ops.exp2i(-shared)
    return _elements(p, f, rounding, ops, rng) * ops.exp2i(shared)


_E4M3 = None


def _nvfp(b, amax, f: Format, rounding, ops, rng):
    """NVFP4 (torchao's two-level scaling): a per-tensor fp32 scale amax / (448 x 6); per block of 16,
    the scale amax_block / 6 relative to it, rounded (nearest even) to e4m3 in [2^-6, 448]; elements
    x / (tensor scale x block scale), clamped to +-6, rounded to e2m1; dequantized as
    q x (tensor scale x block scale). The float32 operations follow torchao's order."""
    global _E4M3
    if _E4M3 is None:
        from quant.formats import parse_format

        _E4M3 = parse_format("fp8_e4m3")
    tensor_amax = ops.amax(amax.reshape(1, -1), -1)  # the whole tensor's (block maxima kept per block)
    pts = ops.div(tensor_amax, 448.0 * 6.0)
    pts = ops.where(pts > 0, pts, 1.0 + 0 * pts)
    block_scale = ops.div(amax, 6.0)
    scaled = block_scale / pts
    s8 = _float_elements(ops.minimum(ops.maximum(scaled, 2.0 ** -6), 448.0), _E4M3, "even", ops, None)
    recip = (1.0 / pts) / s8
    p = b * recip
    p = ops.minimum(ops.maximum(p, -6.0), 6.0)
    q = _float_elements(p, f, rounding, ops, rng)
    return q * (pts * s8)


def _scaled(b, amax, f: Format, rounding, ops, rng):
    top = float(f.max_normal)

    def qdq(clip):
        scale = ops.div(amax * clip if clip != 1.0 else amax, top)
        scale = ops.where(scale > 0, scale, 1.0)
        return _elements(b / scale, f, rounding, ops, rng) * scale

    return _mse_search(qdq, b, ops) if f.mse else qdq(1.0)


def _asym_int(b, f: Format, rounding, ops, rng):
    levels = float(2 ** f.element_bits - 1)
    lo0, hi0 = ops.minimum(ops.amin(b, -1), 0.0), ops.maximum(ops.amax(b, -1), 0.0)

    def qdq(clip):
        lo, hi = (lo0, hi0) if clip == 1.0 else (lo0 * clip, hi0 * clip)
        scale = ops.div(hi - lo, levels)
        scale = ops.where(scale > 0, scale, 1.0)
        zero = ops.minimum(ops.maximum(ops.rint(-lo / scale), 0.0), levels)
        t = b / scale + zero
        q = ops.copysign(_round(ops.abs(t), rounding, ops, rng), t)
        q = ops.minimum(ops.maximum(q, 0.0), levels) + 0.0  # + 0.0: no -0.0 (max/min differ on signed zeros)
        return (q - zero) * scale

    return _mse_search(qdq, b, ops) if f.mse else qdq(1.0)


def _mse_search(qdq, b, ops):
    """Per block, the quantization over :data:`MSE_CLIP_RATIOS` with the least squared error
    (ties keep the larger clip ratio, i.e. the absmax scale first)."""
    best, best_err = None, None
    for c in MSE_CLIP_RATIOS:
        q = qdq(c)
        err = ops.sum((q - b) * (q - b), -1)
        if best is None:
            best, best_err = q, err
        else:
            better = err < best_err
            best = ops.where(better, q, best)
            best_err = ops.where(better, err, best_err)
    return best


def _codebook(p, f: Format, rounding, ops, rng):
    """Nearest code of a sorted codebook in [-1, 1]; ties by the rounding mode."""
    codes = ops.asarray(f.grid, p)
    n = codes.shape[0]
    hi_i = ops.clip_int(ops.searchsorted(codes, p), 1, n - 1)
    lo, hi = ops.take(codes, hi_i - 1), ops.take(codes, hi_i)
    t = (p - lo) / (hi - lo)
    if rounding == "even":
        up = (t > 0.5) | ((t == 0.5) & (hi_i % 2 == 0))
    elif rounding == "nearest":
        up = (t > 0.5) | ((t == 0.5) & (p > 0))
    elif rounding == "floor":
        up = (t >= 1.0) | ((p < 0) & (t > 0))  # toward zero; an exact code stays
    else:
        up = ops.uniform(t.shape, rng, t) < t
    return ops.where(up, hi, lo)
