"""GPTQ for any block- or group-scaled weight format (MX, int/fp with groups, channels or a tensor scale).

GPTQ (Frantar et al., 2023) quantizes a weight matrix W (out x in) one input column at a time and
spreads each column's rounding error over the columns not yet quantized, weighted by the inverse
Hessian of the layer's squared output error, H = 2 X^T X over calibration inputs X. With a
block-scaled format the scale of each block of ``f.block`` columns (MX: a shared power-of-two
exponent per 32; int4_g128: one per 128) is fixed when the first column of the block is reached,
from the columns as updated so far, so every quantized value lies on its block's final grid: the
result is representable in the format (for MX, ``quantize(result, f)`` returns it unchanged; for a
scaled format the values are multiples of the block's stored scale).

``damps``: seed 001's per-layer damping search: the Hessian is damped by ``damp x mean(diag H)``
for each value and the layer keeps the one with the least output error tr((W - Q) H (W - Q)^T) on
calibration windows the GPTQ pass did not see (half of them are held back for it: judged on its
own windows, the least damping always wins and overfits).
Inputs come from the unquantized model (one pass, every layer at once: the non-sequential
variant), so GPTQ corrects each layer's own rounding, not the drift of the layers before it.
"""

from __future__ import annotations


import torch

from mpqsim import InputError
from quant.backend import ops_for
from quant.formats import Format, parse_format
from quant.quantize import _elements

DEFAULT_DAMPS = (0.01, 0.1, 1.0)


def _supported(f: Format) -> None:
    if f.family not in ("mxint", "mxfp", "int", "fp") or f.asymmetric or f.mse:
        raise InputError(f"GPTQ supports MX formats and symmetric int/fp formats with group, channel or tensor "
                         f"scales; not {f.name}")


def _scale(cols: torch.Tensor, f: Format) -> torch.Tensor:
    """Per-row scale of a block of columns (MX: 2^shared exponent; scaled formats: amax / max_normal)."""
    amax = cols.abs().amax(dim=1, keepdim=True)
    if f.family in ("mxint", "mxfp"):
        shared = torch.clamp(torch.floor(torch.log2(torch.where(amax > 0, amax, torch.ones_like(amax)))) - f.emax,
                             -127, 127)
        return torch.where(amax > 0, torch.exp2(shared), torch.ones_like(amax))
    s = amax / float(f.max_normal)
    return torch.where(s > 0, s, torch.ones_like(s))


def _q(col: torch.Tensor, scale: torch.Tensor, f: Format) -> torch.Tensor:
    """Quantize-dequantize one column (out, 1) with a given per-row scale."""
    ops = ops_for(col)
    return _elements(col / scale, f, "even", ops, None) * scale


def gptq_matrix(w: torch.Tensor, h: torch.Tensor, fmt, damp: float = 0.01, lazy: int = 128) -> torch.Tensor:
    """GPTQ-quantize ``w`` (out x in, float32) with Hessian ``h`` (in x in) to ``fmt``."""
    f = parse_format(fmt)
    _supported(f)
    w = w.detach().float().clone()
    h = h.detach().double().clone()
    n = w.shape[1]
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(n, dtype=h.dtype)
    try:
        hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    except RuntimeError:
        raise InputError("GPTQ: the damped Hessian is not positive definite; raise the damping") from None
    group = n if f.granularity in ("tensor", "channel") else f.block
    if group < n:  # lazy batches hold whole scale blocks, so a block's scale sees its updated columns
        lazy = group * max(1, lazy // group)
    q_all = torch.zeros_like(w)
    tensor_scale = _scale(w.abs().amax().reshape(1, 1).expand(w.shape[0], 1), f) if f.granularity == "tensor" else None
    scale = None
    for i1 in range(0, n, lazy):
        i2 = min(i1 + lazy, n)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            col = i1 + j
            if col % group == 0:  # a new scale block: its scale from the columns as updated so far
                blk = torch.cat([w1[:, j:], w[:, i2:]], dim=1)[:, : min(group, n - col)]
                scale = tensor_scale if tensor_scale is not None else _scale(blk, f)
            wc = w1[:, j:j + 1]
            qc = _q(wc, scale, f)
            q_all[:, col:col + 1] = qc
            e = (wc - qc) / hinv1[j, j]
            w1[:, j + 1:] -= e @ hinv1[j:j + 1, j + 1:]
            err1[:, j:j + 1] = e
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return q_all


def output_error(w: torch.Tensor, q: torch.Tensor, h: torch.Tensor) -> float:
    """tr((W - Q) H (W - Q)^T): the layer's summed squared output error over the calibration inputs (x 2)."""
    d = (w.float() - q.float()).double()
    return float(torch.einsum("oi,ij,oj->", d, h.double(), d))


def collect_hessians(model, modules: dict, windows: torch.Tensor, batch_size: int = 4) -> dict:
    """H = 2 X^T X / tokens of each named module's input over the calibration windows (unquantized model)."""
    hs, counts, hooks = {}, {}, []

    def hook(name):
        def fn(mod, args):
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])
            hs[name] = hs.get(name, 0) + 2.0 * x.T.double() @ x.double()
            counts[name] = counts.get(name, 0) + x.shape[0]
        return fn

    for name, m in modules.items():
        hooks.append(m.register_forward_pre_hook(hook(name)))
    try:
        with torch.no_grad():
            for i in range(0, len(windows), batch_size):
                model(input_ids=windows[i:i + batch_size])
    finally:
        for hk in hooks:
            hk.remove()
    return {n: hs[n] / counts[n] for n in hs}


#: Hessians held at once (float64, in_features^2 each): layers are taken in groups under this many
#: bytes, one calibration pass per group (a 1.5B model's 28 down projections alone need 18 GB)
HESSIAN_BUDGET_BYTES = 2e9


def gptq_fakequant(fq, pmap, windows: torch.Tensor, damps=DEFAULT_DAMPS, progress=None,
                   hessian_budget: float = HESSIAN_BUDGET_BYTES) -> list[dict]:
    """GPTQ weights for every linear op of ``fq`` whose weight format under ``pmap`` is low, installed
    so that ``fq.apply(pmap)`` uses them instead of round-to-nearest. Returns one record per layer
    (damping chosen, output error of GPTQ and of RTN). Layers go in groups whose Hessians fit
    ``hessian_budget`` bytes (the same result as all at once: the inputs come from the unquantized
    model either way)."""
    from quant.fakequant import _active

    fq.reset()
    todo = {}
    for name, module in fq.linear.items():
        f = _active(pmap.formats_for(name, fq.roles[name]).weight, fq.emulate_high)
        if f is not None and not f.is_high_precision:
            if type(module).__name__ == "Conv1D":
                raise InputError("GPTQ: GPT-2's Conv1D layers are not supported")
            _supported(f)
            todo[name] = f
    if len(windows) < 2 and len(damps) > 1:
        raise InputError("GPTQ's damping search needs at least 2 calibration windows (half judge the other half)")
    half = len(windows) // 2 if len(damps) > 1 else len(windows)
    groups, cur, size = [], [], 0.0
    for name in todo:
        b = 8.0 * fq._orig[name].shape[1] ** 2 * (2 if half < len(windows) else 1)
        if cur and size + b > hessian_budget:
            groups.append(cur)
            cur, size = [], 0.0
        cur.append(name)
        size += b
    if cur:
        groups.append(cur)
    out = []
    for group in groups:
        out += _gptq_group(fq, {n: todo[n] for n in group}, windows, half, damps, progress, len(out), len(todo))
    return out


def _gptq_group(fq, todo: dict, windows, half: int, damps, progress, done: int, total: int) -> list[dict]:
    from quant.quantize import quantize

    mods = {n: fq.linear[n] for n in todo}
    hs = collect_hessians(fq.model, mods, windows[:half])
    hv = collect_hessians(fq.model, mods, windows[half:]) if half < len(windows) else hs
    out = []
    for i, (name, f) in enumerate(todo.items()):
        w = fq._orig[name].detach().float()
        h, h_val = hs[name].float(), hv[name].float()
        best = None
        for d in damps:
            q = gptq_matrix(w, h, f, damp=d)
            err = output_error(w, q, h_val)
            if best is None or err < best[1]:
                best = (d, err, q)
        rtn = quantize(w, f, axis=-1)
        out.append(dict(op=name, format=f.name, damp=best[0], gptq_error=best[1], rtn_error=output_error(w, rtn, h_val)))
        fq._wcache[(name, f.name)] = torch.nn.Parameter(best[2].to(fq._orig[name].dtype), requires_grad=False)
        del hs[name]
        if hv is not hs:
            del hv[name]
        if progress:
            progress(done + i + 1, total)
    return out


__all__ = ["gptq_matrix", "gptq_fakequant", "collect_hessians", "output_error", "DEFAULT_DAMPS"]
