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
from quant.fakequant import FakeQuantizer
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


def _rel_noise(ref: torch.Tensor, approx: torch.Tensor) -> float:
    den = float((ref.double() ** 2).sum())
    return float(((ref.double() - approx.double()) ** 2).sum()) / den if den > 0 else 0.0


def _db(noise: float) -> float:
    return -10 * math.log10(noise) if noise > 0 else math.inf


@torch.no_grad()
def op_sensitivity(fq: FakeQuantizer, windows: torch.Tensor, pmap: PrecisionMap, max_windows: int = 2) -> pd.DataFrame:
    """Per matmul op: SQNR (dB) of its weight, its input activation and its output when that op
    alone runs in its formats under ``pmap``, from one unquantized forward pass over (up to)
    ``max_windows`` windows.

    ``noise`` = 1 / SQNR of the output (relative squared error), the searchers' sensitivity.
    """
    captured: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: captured.__setitem__(n, args[0].detach()))
             for n, m in fq.linear.items()]
    fq.reset()
    for m in fq.attention.values():
        m._mpq["capture"] = {}
    try:
        fq.model(input_ids=windows[:max_windows])
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for name, module in fq.linear.items():
        if fq.roles[name] != "linear":
            continue
        low = pmap.formats_for(name, "linear")
        x, w = captured[name], fq._orig[name].detach()
        conv1d = type(module).__name__ == "Conv1D"
        wq = quantize(w, low.weight, axis=0 if conv1d else -1) if not low.weight.is_high_precision else w
        xq = quantize(x, low.act) if not low.act.is_high_precision else x
        y = x @ w if conv1d else x @ w.T
        yq = xq @ wq if conv1d else xq @ wq.T
        noise = _rel_noise(y, yq)
        rows.append(dict(op=name, params=w.numel(), weight_sqnr=_db(_rel_noise(w, wq)),
                         act_sqnr=_db(_rel_noise(x, xq)), output_sqnr=_db(noise), noise=noise))
    for path, module in fq.attention.items():
        cap = module._mpq.pop("capture", {})
        if not cap:
            continue
        q, k, p, v = cap["q"], cap["k"], cap["p"], cap["v"]
        low = pmap.formats_for(path + ".qk", "attention")
        qq = quantize(q, low.act) if not low.act.is_high_precision else q
        kq = quantize(k, low.weight) if not low.weight.is_high_precision else k
        pq = quantize(p, low.act) if not low.act.is_high_precision else p
        vq = quantize(v, low.weight, axis=-2) if not low.weight.is_high_precision else v
        for op, ref, approx, act, actq in ((".qk", q @ k.transpose(-1, -2), qq @ kq.transpose(-1, -2), q, qq),
                                           (".av", p @ v, pq @ vq, p, pq)):
            noise = _rel_noise(ref, approx)
            wsrc, wq_ = (k, kq) if op == ".qk" else (v, vq)
            rows.append(dict(op=path + op, params=0, weight_sqnr=_db(_rel_noise(wsrc, wq_)),
                             act_sqnr=_db(_rel_noise(act, actq)), output_sqnr=_db(noise), noise=noise))
    return pd.DataFrame(rows)
