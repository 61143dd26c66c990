"""Fake-quantized transformers causal LMs: every matmul of docs/DESIGN.md gets its own formats.

:class:`FakeQuantizer` wraps a loaded model. ``apply(pmap)`` sets, for each op of the workloads
op table (so the names are the ones ``mpqsim latency --map`` prices):

* linear ops (q/k/v/o/gate/up/down, GPT-2's c_attn/c_proj/c_fc, lm_head, routers): the weight is
  replaced by its quantize-dequantize (a new Parameter, so a tied embedding is untouched; cached per
  format), and a forward pre-hook quantizes the input activation along its last axis (per-tensor
  scales are taken per sequence: :func:`quantize_act`);
* embedding tables (role ``embed``: token and learned position embeddings): weight-only, the table
  replaced by its quantize-dequantize along the embedding width (rows looked up as stored; a tied
  table's lookup and its lm_head are set independently);
* the attention matmuls ``qk`` (weight = K, act = Q, blocked along head_dim) and ``av`` (weight = V
  blocked along the sequence, act = the probabilities blocked along the keys), inside an attention
  function registered with transformers as ``mpqsim`` (eager semantics: GQA, scaling, softcap, mask);
* the KV-cache format, applied to K and V before the attention matmuls. With a low-precision
  KV cache, K and V enter ``qk`` / ``av`` as stored (quantized once); an attention weight format
  other than the cache's (or a high one) is refused rather than quantizing them twice.

High-precision formats (bf16/fp16/fp32) are not emulated by default: those operands run in the
model's own dtype (float32 on the CPU), so a map with everything high leaves the logits unchanged
bit for bit. With ``emulate_high=True`` bf16/fp16 operands are cast (IEEE round trip) like any
other format: a true bf16 baseline, against which low-precision deltas are then measured.
``calls`` counts quantizer calls per (op, operand, format).
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from mpqsim import InputError
from quant.formats import Format
from quant.precision import PrecisionMap
from quant.quantize import quantize
from workloads.optable import build_optable, op_names
from workloads.spec import spec_from_config

ATTN_IMPL = "mpqsim"
LINEAR_ROLES = ("linear", "lm_head", "router")


def _active(f: Format | None, emulate_high: bool = False) -> Format | None:
    """The format to emulate for an operand, or None to leave it in the model's dtype: low formats
    always; bf16/fp16 too when ``emulate_high`` (fp32 never: it is the model's own dtype)."""
    if f is None or f.name == "fp32":
        return None
    if f.is_high_precision and not emulate_high:
        return None
    return f


def quantize_act(x: torch.Tensor, f: Format, axis: int = -1) -> torch.Tensor:
    """Quantize an activation (or KV) tensor whose first axis is the batch of sequences.

    Formats with one scale per tensor take it **per sequence** (the tensor of one sequence), as a
    dynamic per-tensor kernel serving that sequence alone would: a scale never spans unrelated
    sequences, so an evaluation does not depend on how its windows were batched. Per-channel,
    group and block scales lie within a token (or, for V, within a sequence) already.
    """
    if f.granularity == "tensor" and x.ndim >= 2 and x.shape[0] > 1:
        return torch.cat([quantize(x[i:i + 1], f, axis=axis) for i in range(x.shape[0])])
    return quantize(x, f, axis=axis)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def fakequant_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None,
                        **kwargs):
    """Eager attention with the module's formats (``module._mpq``) on Q, K, probabilities and V."""
    cfg = getattr(module, "_mpq", None)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if cfg is not None:
        count = cfg["calls"]
        for operand, fmt in (("k_cache", cfg["kv"]), ("v_cache", cfg["kv"])):
            if fmt is not None:
                count[(cfg["qk"] if operand == "k_cache" else cfg["av"], "kv", fmt.name)] += 1
        if cfg["kv"] is not None:
            key, value = quantize_act(key, cfg["kv"]), quantize_act(value, cfg["kv"])
        if cfg["qk_act"] is not None:
            query = quantize_act(query, cfg["qk_act"])
            count[(cfg["qk"], "act", cfg["qk_act"].name)] += 1
        if cfg["qk_w"] is not None:
            key = quantize_act(key, cfg["qk_w"])
            count[(cfg["qk"], "weight", cfg["qk_w"].name)] += 1
        if cfg["av_w"] is not None:
            value = quantize_act(value, cfg["av_w"], axis=-2)
            count[(cfg["av"], "weight", cfg["av_w"].name)] += 1
    n_rep = query.shape[1] // key.shape[1]
    key, value = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    capture = cfg.get("capture") if cfg is not None else None
    capture = capture if capture is not None and not capture else None  # op_sensitivity: the first call only
    if capture is not None:
        capture.update(scaling=scaling, g_scores=_grad_slot(scores))
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    if capture is not None:  # the unquantized operands, and where the gradients of both outputs go
        capture.update(q=query.detach(), k=key.detach(), p=probs.detach(), v=value.detach())
    if cfg is not None and cfg["av_act"] is not None:
        probs = quantize_act(probs, cfg["av_act"])
        cfg["calls"][(cfg["av"], "act", cfg["av_act"].name)] += 1
    out = torch.matmul(probs, value)
    if capture is not None:
        capture["g_out"] = _grad_slot(out)
    out = out.transpose(1, 2).contiguous()
    return out, probs


def _grad_slot(t: torch.Tensor) -> dict:
    """A dict that receives ``t``'s gradient as ``"g"`` in a backward pass (empty without one)."""
    slot: dict = {}
    if t.requires_grad:
        t.register_hook(lambda g: slot.__setitem__("g", g.detach()))
    return slot


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(ATTN_IMPL, fakequant_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPL, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


class FakeQuantizer:
    """Apply precision maps to a transformers causal LM in place (see the module docstring)."""

    def __init__(self, model, name: str = "", emulate_high: bool = False):
        self.model = model
        self.emulate_high = emulate_high  # run bf16/fp16 operands as true bf16/fp16 (casts), not float32
        cfg = model.config.to_dict()
        self.spec = spec_from_config(cfg, name or cfg.get("_name_or_path") or cfg.get("model_type", "model"),
                                     where="model config")
        self.table = build_optable(self.spec)
        if (self.table.role == "expert").any():
            raise InputError(f"{self.spec.name}: fake quantization of MoE experts is not supported yet")
        self.calls: Counter = Counter()
        self.linear: dict[str, nn.Module] = {}
        self.roles: dict[str, str] = {}
        self.attention: dict[str, nn.Module] = {}
        self.embeds: dict[str, nn.Module] = {}
        for row in self.table.itertuples():
            if row.role == "embed":
                m = self._module(row.name)
                if isinstance(m, nn.Embedding):
                    self.embeds[row.name] = m
            elif row.role in LINEAR_ROLES:
                for n in op_names(self.table.loc[[row.Index]], roles=LINEAR_ROLES):
                    self.linear[n] = self._module(n)
                    self.roles[n] = row.role
            elif row.role == "attention" and row.name.endswith(".qk"):
                for n in op_names(self.table.loc[[row.Index]], roles=("attention",)):
                    self.attention[n[: -len(".qk")]] = self._module(n[: -len(".qk")])
        self.op_names = set(op_names(self.table)) | set(self.embeds)  # (position tables a model computes are not ops)
        self._orig = {n: m.weight for n, m in (self.linear | self.embeds).items()}
        self._wcache: dict[tuple[str, str], nn.Parameter] = {}
        self._act: dict[str, Format] = {}
        self._hooks = [m.register_forward_pre_hook(self._pre_hook(n)) for n, m in self.linear.items()]
        _register_attention()
        self._impl = model.config._attn_implementation
        self._set_impl(ATTN_IMPL)

    def _module(self, name: str) -> nn.Module:
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            raise InputError(f"{self.spec.name}: op {name!r} of the op table is not a module of the model") from None

    def _set_impl(self, impl: str) -> None:
        for c in {id(m.config): m.config for m in self.model.modules() if hasattr(m, "config")}.values():
            c._attn_implementation = impl

    def _pre_hook(self, name: str):
        def hook(module, args):
            f = self._act.get(name)
            if f is None:
                return None
            self.calls[(name, "act", f.name)] += 1
            return (quantize_act(args[0], f),) + tuple(args[1:])

        return hook

    def _weight(self, name: str, f: Format) -> nn.Parameter:
        key = (name, f.name)
        if key not in self._wcache:
            w = self._orig[name]
            conv1d = type(self.linear.get(name)).__name__ == "Conv1D"  # GPT-2 stores (in, out)
            with torch.no_grad():
                q = quantize(w.detach(), f, axis=0 if conv1d else -1)
            self._wcache[key] = nn.Parameter(q, requires_grad=False)
        self.calls[(name, "weight", f.name)] += 1
        return self._wcache[key]

    def apply(self, pmap: PrecisionMap) -> None:
        """Set every op's formats from ``pmap`` (ops it does not name get its role rule or default)."""
        pmap.validate(self.op_names)
        for name, module in self.linear.items():
            f = pmap.formats_for(name, self.roles[name])
            w = _active(f.weight, self.emulate_high)
            module.weight = self._weight(name, w) if w is not None else self._orig[name]
            a = _active(f.act, self.emulate_high)
            if a is None:
                self._act.pop(name, None)
            else:
                self._act[name] = a
        for name, module in self.embeds.items():
            w = _active(pmap.formats_for(name, "embed").weight, self.emulate_high)
            module.weight = self._weight(name, w) if w is not None else self._orig[name]
        kv = _active(pmap.kv_cache, self.emulate_high)
        for path, module in self.attention.items():
            qk, av = pmap.formats_for(path + ".qk", "attention"), pmap.formats_for(path + ".av", "attention")
            qk_w, av_w = _active(qk.weight, self.emulate_high), _active(av.weight, self.emulate_high)
            if kv is not None:
                # K and V are read from the KV cache, already in its format: quantized once, never twice
                for op, w in ((".qk", qk_w), (".av", av_w)):
                    if w is not None and w != kv:
                        raise InputError(f"{pmap.name}: {path}{op} reads K/V from a {kv.name} KV cache, so its "
                                         f"weight operand cannot be {w.name} (it would be quantized twice); give "
                                         f"{kv.name} or a high-precision format")
                qk_w = av_w = None
            module._mpq = dict(qk=path + ".qk", av=path + ".av", calls=self.calls, kv=kv, qk_w=qk_w,
                               qk_act=_active(qk.act, self.emulate_high), av_w=av_w,
                               av_act=_active(av.act, self.emulate_high))

    def reset(self) -> None:
        """Back to the unquantized model (the attention stays on the mpqsim eager function)."""
        self.apply(PrecisionMap(name="high"))

    def close(self) -> None:
        """Restore the model as it was: original weights, no hooks, its attention implementation."""
        self.reset()
        for h in self._hooks:
            h.remove()
        for m in self.attention.values():
            m.__dict__.pop("_mpq", None)
        self._set_impl(self._impl)
        self._wcache.clear()
