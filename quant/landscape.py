"""Seed 001's radial loss landscape: NLL along a direction in weight space against the perturbation's SNR.

The weights w are every linear layer's weight matrix (the transformer's matmuls and the lm_head,
as seed 001 counts "weight tensors"); a perturbation dw has SNR = 20 log10(||w|| / ||dw||) dB
(SQNR when dw = Q(w) - w). :func:`radial_profile` evaluates NLL(w + lambda e) with ``lambda`` set
for each SNR of a grid, along a random unit direction (``direction="random"``: a Gaussian draw,
normalised over all the weights) or along the RTN quantization error of a format (``"rtn"``).
:func:`rtn_point` gives the RTN features of seed 001's predictor: the SQNR of RTN, NLL at w and at
Q(w), and the radial slope dNLL/dSQNR at the RTN point (central difference +- 1 dB along the
quantization error). The weights are restored after every evaluation.
"""

from __future__ import annotations

import math

import pandas as pd
import torch

from mpqsim import InputError
from quant.evaluate import perplexity
from quant.quantize import quantize


def _weights(fq) -> dict:
    return {n: fq._orig[n] for n in fq.linear}


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))


def _nll(model, windows, batch_size: int) -> float:
    return math.log(perplexity(model, windows, batch_size))


def _eval_with(fq, windows, delta: dict, scale: float, batch_size: int) -> float:
    """NLL with every weight w + scale x delta[w]; the weights are then restored bit for bit (a copy,
    not a subtraction: floating-point addition does not undo exactly)."""
    w = _weights(fq)
    keep = {n: w[n].detach().clone() for n in delta}
    with torch.no_grad():
        for n, d in delta.items():
            w[n].add_(d, alpha=scale)
        try:
            return _nll(fq.model, windows, batch_size)
        finally:
            for n in delta:
                w[n].copy_(keep[n])


def _direction(fq, kind: str, fmt: str | None, seed: int) -> tuple[dict, float]:
    """(delta per weight, ||delta||): a random Gaussian direction, or the RTN error of ``fmt``."""
    w = _weights(fq)
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        d = {n: torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.dtype) for n, t in w.items()}
    elif kind == "rtn":
        if fmt is None:
            raise InputError("the RTN direction needs a weight format (--format)")
        with torch.no_grad():
            d = {n: quantize(t.detach(), fmt, axis=-1) - t.detach() for n, t in w.items()}
    else:
        raise InputError(f"unknown direction {kind!r}; valid: random, rtn")
    return d, _norm(d.values())


def radial_profile(fq, windows: torch.Tensor, snrs_db, direction: str = "random", fmt: str | None = None,
                   seed: int = 0, batch_size: int = 8) -> pd.DataFrame:
    """NLL at each SNR (dB) along one direction: rows snr_db, nll, direction, seed."""
    fq.reset()
    w_norm = _norm(_weights(fq).values())
    d, d_norm = _direction(fq, direction, fmt, seed)
    if d_norm == 0:
        raise InputError("the perturbation direction is zero (the weights are already on the format's grid)")
    rows = [dict(snr_db=math.inf, nll=_nll(fq.model, windows, batch_size), direction=direction, seed=seed)]
    for snr in snrs_db:
        lam = w_norm * 10 ** (-float(snr) / 20) / d_norm  # ||lam d|| / ||w|| at that SNR
        rows.append(dict(snr_db=float(snr), nll=_eval_with(fq, windows, d, lam, batch_size), direction=direction,
                         seed=seed))
    return pd.DataFrame(rows)


def rtn_point(fq, windows: torch.Tensor, fmt: str, batch_size: int = 8, step_db: float = 1.0) -> dict:
    """Seed 001's RTN features of ``fmt``: SQNR (dB), NLL(w), NLL(Q(w)), dNLL/dSQNR at Q(w)."""
    fq.reset()
    w_norm = _norm(_weights(fq).values())
    d, d_norm = _direction(fq, "rtn", fmt, 0)
    sqnr = 20 * math.log10(w_norm / d_norm)
    base = _nll(fq.model, windows, batch_size)
    at = _eval_with(fq, windows, d, 1.0, batch_size)
    lo = _eval_with(fq, windows, d, 10 ** (step_db / 20), batch_size)   # 1 dB lower SNR: a larger error
    hi = _eval_with(fq, windows, d, 10 ** (-step_db / 20), batch_size)  # 1 dB higher SNR
    return dict(format=fmt, params=sum(t.numel() for t in _weights(fq).values()), sqnr_db=sqnr, nll=base,
                rtn_nll=at, radial_slope=(hi - lo) / (2 * step_db))


__all__ = ["radial_profile", "rtn_point"]
