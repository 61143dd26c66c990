"""Accuracy of a fake-quantized model: perplexity on local text and per-op sensitivity (SQNR).

Perplexity uses a fixed, seeded subsample of the text: ``n_windows`` windows of ``window``
tokens at random start positions (NumPy ``default_rng(seed)``), so every evaluation of a search
sees the same tokens. ``delta`` = (ppl_q - ppl_ref) / ppl_ref, as in seed 000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mpqsim import InputError
from quant.fakequant import FakeQuantizer, quantize_act
from quant.precision import PrecisionMap
from quant.quantize import quantize

BUNDLED_TEXTS = {"persuasion": "persuasion.txt", "northanger_abbey": "northanger_abbey.txt"}


def read_text(path_or_name: str) -> str:
    """A text file, or a bundled text by name (``persuasion``, ``northanger_abbey``)."""
    if path_or_name in BUNDLED_TEXTS:
        from importlib import resources

        return (resources.files("quant") / "texts" / BUNDLED_TEXTS[path_or_name]).read_text(encoding="utf-8")
    p = Path(path_or_name)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"text file not found: {p} (or a bundled text: {', '.join(BUNDLED_TEXTS)})") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as e:
        raise InputError(f"cannot read {p} as UTF-8 text: {e}") from None
    if not text.strip():
        raise InputError(f"text file {p} is empty")
    return text


def sample_windows(tokenizer, text: str, n_windows: int, window: int, seed: int = 0) -> torch.Tensor:
    """(n_windows, window) token ids from seeded random start positions in the tokenized text."""
    if n_windows <= 0 or window < 2:
        raise InputError(f"need n_windows >= 1 and window >= 2 tokens, got {n_windows} x {window}")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    if len(ids) <= window:
        raise InputError(f"the text has {len(ids)} tokens, fewer than one window of {window}")
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(len(ids) - window, size=min(n_windows, len(ids) - window), replace=False))
    return torch.stack([ids[s:s + window] for s in starts])


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token negative log-likelihood) over every predicted token of the windows."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                reduction="sum")
        total += float(nll)
        count += batch[:, 1:].numel()
    return math.exp(total / count)


@dataclass
class Evaluator:
    """Perplexity of maps on fixed windows, relative to the unquantized model."""

    fq: FakeQuantizer
    windows: torch.Tensor
    batch_size: int = 8
    reference: float | None = None

    def __post_init__(self):
        if self.reference is None:
            self.fq.reset()
            self.reference = perplexity(self.fq.model, self.windows, self.batch_size)

    def __call__(self, pmap: PrecisionMap) -> dict:
        self.fq.apply(pmap)
        try:
            ppl = perplexity(self.fq.model, self.windows, self.batch_size)
        finally:
            self.fq.reset()
        return dict(ppl=ppl, ref_ppl=self.reference, delta=(ppl - self.reference) / self.reference)


def nn_embedding(ids: torch.Tensor, weight: torch.Tensor, module) -> torch.Tensor:
    """``module``'s lookup with ``weight`` in place of its table (its own forward: offsets, scaling)."""
    orig = module.weight
    module.weight = torch.nn.Parameter(weight, requires_grad=False)
    try:
        return module(ids).detach()
    finally:
        module.weight = orig


def _rel_noise(ref: torch.Tensor, approx: torch.Tensor) -> float:
    den = float((ref.double() ** 2).sum())
    return float(((ref.double() - approx.double()) ** 2).sum()) / den if den > 0 else 0.0


def _db(noise: float) -> float:
    return -10 * math.log10(noise) if noise > 0 else math.inf


def op_sensitivity(fq: FakeQuantizer, windows: torch.Tensor, pmap: PrecisionMap, max_windows: int = 2) -> pd.DataFrame:
    """Per matmul op (lm_head and the attention ``qk``/``av`` included): SQNR (dB) of its weight,
    its input activation and its output when that op alone runs in its formats under ``pmap``, and
    the loss that costs, from one unquantized forward and backward pass over (up to)
    ``max_windows`` windows.

    * ``noise`` = 1 / SQNR of the output (relative squared error);
    * ``loss`` = the Fisher (second-order) estimate of the mean next-token NLL increase when that op
      alone is quantized: ``0.5 * sum_t (g_t . dY_t)^2`` over the op's output rows ``t``, with ``g``
      the gradient of the summed per-window mean NLL at the unquantized output and ``dY`` the output
      error (the empirical-Fisher approximation used by Fisher/HAWQ-style mixed-precision methods).
      Unlike ``noise`` it sees where an op sits: the lm_head's error goes straight into the logits,
      a down projection's is damped by every later layer. The searchers' sensitivity.
    """
    captured: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(mod, args, out):
            captured[name] = args[0].detach()
            out.register_hook(lambda g: grads.__setitem__(name, g.detach()))
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in fq.linear.items() if fq.roles[n] != "router"]
    fq.reset()
    for m in fq.attention.values():
        m._mpq["capture"] = {}
    batch = windows[:max_windows]
    # gradients flow from the embedding output only: no parameter gradient is computed or left behind
    frozen = [p for p in fq.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    emb_in: dict[str, torch.Tensor] = {}

    def leaf(name):  # an embedding's output becomes a leaf that records its gradient
        def hook(mod, args, out):
            out = out.detach().requires_grad_()
            if name is not None:
                emb_in[name] = args[0].detach()
                out.register_hook(lambda g: grads.__setitem__(name, g.detach()))
            return out
        return hook

    tok = fq.model.get_input_embeddings()
    for name, module in fq.embeds.items():
        hooks.append(module.register_forward_hook(leaf(name)))
    if not any(m is tok for m in fq.embeds.values()):
        hooks.append(tok.register_forward_hook(leaf(None)))
    try:
        with torch.enable_grad():
            logits = fq.model(input_ids=batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                                    reduction="none").view(len(batch), -1)
            nll.mean(dim=1).sum().backward()  # each window's own mean NLL: its gradient is per window
    finally:
        for h in hooks:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)

    def fisher(g: torch.Tensor | None, dy: torch.Tensor) -> float:
        if g is None:
            return math.nan
        dot = (g.double() * dy.double()).sum(dim=-1)  # one term per output row (token, head)
        return 0.5 * float((dot ** 2).sum()) / len(batch)

    rows = []
    with torch.no_grad():
        for name, module in fq.linear.items():
            if name not in captured:
                continue
            low = pmap.formats_for(name, fq.roles[name])
            x, w = captured[name], fq._orig[name].detach()
            conv1d = type(module).__name__ == "Conv1D"
            wq = quantize(w, low.weight, axis=0 if conv1d else -1) if not low.weight.is_high_precision else w
            xq = quantize_act(x, low.act) if not low.act.is_high_precision else x
            y = x @ w if conv1d else x @ w.T
            yq = xq @ wq if conv1d else xq @ wq.T
            noise = _rel_noise(y, yq)
            rows.append(dict(op=name, params=w.numel(), weight_sqnr=_db(_rel_noise(w, wq)),
                             act_sqnr=_db(_rel_noise(x, xq)), output_sqnr=_db(noise), noise=noise,
                             loss=fisher(grads.get(name), yq - y)))
        for name, module in fq.embeds.items():
            if name not in emb_in:
                continue
            w = fq._orig[name].detach()
            f = pmap.formats_for(name, "embed").weight
            wq = quantize(w, f, axis=-1) if not f.is_high_precision else w
            ids = emb_in[name]
            y, yq = nn_embedding(ids, w, module), nn_embedding(ids, wq, module)
            noise = _rel_noise(y, yq)
            rows.append(dict(op=name, params=w.numel(), weight_sqnr=_db(_rel_noise(w, wq)), act_sqnr=math.inf,
                             output_sqnr=_db(noise), noise=noise, loss=fisher(grads.get(name), yq - y)))
        for path, module in fq.attention.items():
            cap = module._mpq.pop("capture", {})
            if not cap:
                continue
            q, k, p, v = cap["q"], cap["k"], cap["p"], cap["v"]
            low = pmap.formats_for(path + ".qk", "attention")
            qq = quantize_act(q, low.act) if not low.act.is_high_precision else q
            kq = quantize_act(k, low.weight) if not low.weight.is_high_precision else k
            pq = quantize_act(p, low.act) if not low.act.is_high_precision else p
            vq = quantize_act(v, low.weight, axis=-2) if not low.weight.is_high_precision else v
            scale = cap["scaling"]
            for op, ref, approx, act, actq, g in (
                    (".qk", q @ k.transpose(-1, -2) * scale, qq @ kq.transpose(-1, -2) * scale, q, qq, cap["g_scores"]),
                    (".av", p @ v, pq @ vq, p, pq, cap["g_out"])):
                noise = _rel_noise(ref, approx)
                wsrc, wq_ = (k, kq) if op == ".qk" else (v, vq)
                rows.append(dict(op=path + op, params=0, weight_sqnr=_db(_rel_noise(wsrc, wq_)),
                                 act_sqnr=_db(_rel_noise(act, actq)), output_sqnr=_db(noise), noise=noise,
                                 loss=fisher(g.get("g"), approx - ref)))
    return pd.DataFrame(rows)
