"""Error metrics for quantized tensors: SQNR and error statistics (NumPy arrays or torch tensors)."""

from __future__ import annotations

import math

import numpy as np


def _np64(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(np.float64, copy=False)
    return x.detach().to("cpu").double().numpy()


def sqnr(x, q) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - q)^2); inf if exact."""
    x, q = _np64(x), _np64(q)
    noise = float(np.sum((x - q) ** 2))
    signal = float(np.sum(x**2))
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def error_stats(x, q) -> dict:
    """SQNR (dB), MSE, max |error|, mean relative error (over non-zero inputs), the fraction of
    zeros in the output and the fraction of non-zero inputs flushed to zero."""
    x, q = _np64(x), _np64(q)
    err = np.abs(x - q)
    nz = x != 0
    return dict(
        sqnr_db=sqnr(x, q),
        mse=float(np.mean(err**2)) if err.size else 0.0,
        max_abs_err=float(err.max()) if err.size else 0.0,
        mean_rel_err=float(np.mean(err[nz] / np.abs(x[nz]))) if nz.any() else 0.0,
        zero_frac=float(np.mean(q == 0)) if q.size else 0.0,
        flushed_frac=float(np.mean((q == 0) & nz)) if q.size else 0.0,
    )
