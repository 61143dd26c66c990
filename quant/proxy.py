"""Seed 004's proxy quantization: outlier input dimensions of each low-precision weight kept in 16 bits.

Dettmers & Zettlemoyer (2023, section 3) find that the hidden units whose *outgoing* weights have
the largest standard deviation are the ones that produce outlier features (up to 20x the others).
Proxy quantization is input-independent: for each linear layer it takes the producer of its
input, ranks the producer's output dimensions (rows of its weight, out x in) by standard
deviation, and keeps the top ``fraction`` of those dimensions of the consumer's *input* (its
weight columns) in 16 bits; the rest is quantized as the map says. Producers, by what feeds the
consumer in a pre-norm decoder (Llama, Qwen, Mistral, Gemma, OPT-style names of
:class:`workloads.spec.ArchNames`):

* q/k/v of layer i read the residual stream: producer the previous layer's down-projection
  (layer 0: the token-embedding table, whose columns are the hidden dimensions);
* gate/up of layer i read the residual stream after attention: producer that layer's o-projection;
* o_proj reads the attention output: producer v_proj (grouped-query heads repeated);
* down_proj reads the MLP's intermediate: producer up_proj;
* lm_head reads the final hidden state: producer the last layer's down-projection.

What it costs: every kept column is stored in 16 bits instead of the format's bits, so a weight of
``b`` bits per element grows to ``(1 - p) b + 16 p`` (:func:`effective_bits`); seed 004's bit-level
axis counts these bits (:func:`proxy_fakequant` returns them). The cost model prices maps per op
format and does not yet see the kept columns (a mixed op would be a dense 16-bit slice plus the
low-precision rest).
"""

from __future__ import annotations

import torch

from mpqsim import InputError
from quant.formats import parse_format
from quant.quantize import quantize


def effective_bits(bits: float, fraction: float) -> float:
    """Bits per weight element when ``fraction`` of the input columns stay in 16 bits."""
    return (1.0 - fraction) * bits + 16.0 * fraction


def _producers(fq) -> dict[str, str | None]:
    """Consumer linear op -> the op (or embedding table) whose output rows feed its input columns."""
    n, spec = fq.spec.names, fq.spec
    out: dict[str, str | None] = {}
    layers = spec.layers
    for i in range(layers):
        L = n.layer.format(i=i)
        prev_down = f"{n.layer.format(i=i - 1)}.{n.down}" if i else n.embed
        attn = f"{L}.{n.attn}"
        for part in (n.q, n.k, n.v, n.qkv):
            if part:
                out[f"{attn}.{part}"] = prev_down
        out[f"{attn}.{n.o}"] = f"{attn}.{n.v}" if n.v and not n.qkv else None
        for part in (n.gate, n.up):
            if part:
                out[f"{L}.{part}"] = f"{attn}.{n.o}"
        out[f"{L}.{n.down}"] = f"{L}.{n.up}"
    out[n.lm_head] = f"{n.layer.format(i=layers - 1)}.{n.down}"
    return out


def _row_std(w: torch.Tensor) -> torch.Tensor:
    return w.detach().float().std(dim=1)


def kept_columns(fq, fraction: float) -> dict[str, torch.Tensor]:
    """Consumer op -> indices of its input columns kept in 16 bits (top ``fraction`` by producer row std)."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"--proxy must be a fraction in [0, 1), got {fraction}")
    spec = fq.spec
    group = max(1, spec.heads // max(spec.kv_heads, 1))
    hd = spec.head_dim
    out = {}
    for consumer, producer in _producers(fq).items():
        if consumer not in fq.linear or producer is None:
            continue
        src = fq._orig.get(producer)
        if src is None or isinstance(src, tuple):
            continue
        conv1d = type(fq.linear[consumer]).__name__ == "Conv1D"
        if conv1d:
            continue  # GPT-2 style (in, out) storage: not supported by this mapping
        std = src.detach().float().std(dim=0) if producer == spec.names.embed else _row_std(src)
        cols = fq._orig[consumer].shape[1]
        if producer.endswith(spec.names.v) and cols == std.numel() * group:  # GQA: o_proj columns per query head
            idx = torch.arange(cols)
            std = std[(idx // hd // group) * hd + idx % hd]
        if std.numel() != cols:
            continue  # a projection between producer and consumer (OPT-350m): no one-to-one dimensions
        k = int(round(fraction * cols))
        if k:
            out[consumer] = torch.topk(std, k).indices
    return out


def proxy_fakequant(fq, pmap, fraction: float) -> dict:
    """Install proxy-quantized weights in ``fq`` for every linear op ``pmap`` puts in a low weight
    format (``fq.apply(pmap)`` then uses them). Returns the count of ops touched, the columns kept
    and the weight bits of the quantized ops before and after (16-bit columns counted)."""
    cols = kept_columns(fq, fraction)
    ops, kept, base_bits, bits = 0, 0, 0.0, 0.0
    for name, module in fq.linear.items():
        f = pmap.formats_for(name, fq.roles[name]).weight
        if f.is_high_precision:
            continue
        w = fq._orig[name]
        j = cols.get(name)
        with torch.no_grad():
            q = quantize(w.detach(), f, axis=-1)
            if j is not None:
                q[:, j] = w.detach()[:, j].to(q.dtype)
        fq._wcache[(name, f.name)] = torch.nn.Parameter(q.to(w.dtype), requires_grad=False)
        n_el = w.numel()
        frac = (0 if j is None else len(j)) / w.shape[1]
        b = parse_format(f.name).bits_per_element
        base_bits += b * n_el
        bits += effective_bits(b, frac) * n_el
        ops += 1
        kept += 0 if j is None else len(j)
    return dict(ops=ops, kept_columns=kept, weight_bits_rtn=base_bits, weight_bits_proxy=bits)


__all__ = ["effective_bits", "kept_columns", "proxy_fakequant"]
