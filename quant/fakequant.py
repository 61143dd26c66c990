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
* MoE experts (role ``expert``; Mixtral's ``...experts.{e}.w1`` / ``w3`` / ``w2``, the checkpoint's
  names) on transformers 5's fused expert tensors (``mlp.experts.gate_up_proj`` [E, 2I, H] and
  ``down_proj`` [E, H, I]): each expert's gate, up and down slices are quantized with that
  expert's formats along their reduction axis, and the experts' forward quantizes each expert's
  inputs (the routed tokens for gate and up, the activated hidden state for down) with its
  activation formats (transformers' eager expert loop: an all-high map reproduces a model loaded
  with ``experts_implementation="eager"`` bit for bit); the router (``block_sparse_moe.gate``,
  transformers 5's ``mlp.gate``) is a linear op;
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


def _experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """transformers 5's fused-experts forward (MixtralExperts), with each expert's inputs quantized
    in its activation formats (gate and up may differ: then each gets its own copy)."""
    mpq = self._mpq_experts
    act = mpq.get("act")
    out = torch.zeros_like(hidden_states)
    with torch.no_grad():
        mask = torch.nn.functional.one_hot(top_k_index, num_classes=self.num_experts + 1).permute(2, 1, 0)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    inter = self.gate_up_proj.shape[1] // 2
    calls = mpq["fq"].calls

    def q(x, part, e):
        f = act[part][e] if act else None
        if f is None:
            return x
        calls[(mpq["names"][part][e], "act", f.name)] += 1
        return quantize_act(x, f)

    for e in hit:
        e = int(e[0])
        if e == self.num_experts:
            continue
        pos, tok = torch.where(mask[e])
        x = hidden_states[tok]
        xg = q(x, "gate", e)
        xu = xg if act is None or act["up"][e] == act["gate"][e] else q(x, "up", e)
        if act is not None and act["up"][e] == act["gate"][e] and act["up"][e] is not None:
            calls[(mpq["names"]["up"][e], "act", act["up"][e].name)] += 1
        if xu is xg:  # one input: the fused product, as transformers computes it (the same bits)
            gate, up = nn.functional.linear(xg, self.gate_up_proj[e]).chunk(2, dim=-1)
        else:
            gate = nn.functional.linear(xg, self.gate_up_proj[e, :inter])
            up = nn.functional.linear(xu, self.gate_up_proj[e, inter:])
        h = q(self.act_fn(gate) * up, "down", e)
        h = nn.functional.linear(h, self.down_proj[e]) * top_k_weights[tok, pos, None]
        out.index_add_(0, tok, h.to(out.dtype))
    return out


class FakeQuantizer:
    """Apply precision maps to a transformers causal LM in place (see the module docstring)."""

    def __init__(self, model, name: str = "", emulate_high: bool = False):
        self.model = model
        self.emulate_high = emulate_high  # run bf16/fp16 operands as true bf16/fp16 (casts), not float32
        cfg = model.config.to_dict()
        self.spec = spec_from_config(cfg, name or cfg.get("_name_or_path") or cfg.get("model_type", "model"),
                                     where="model config")
        self.table = build_optable(self.spec)
        self.calls: Counter = Counter()
        self.linear: dict[str, nn.Module] = {}
        self.roles: dict[str, str] = {}
        self.attention: dict[str, nn.Module] = {}
        self.embeds: dict[str, nn.Module] = {}
        self.experts: dict[str, nn.Module] = {}   # layer path -> the fused experts module
        for row in self.table.itertuples():
            if row.role == "embed":
                m = self._module(row.name)
                if isinstance(m, nn.Embedding):
                    self.embeds[row.name] = m
            elif row.role in LINEAR_ROLES:
                for n in op_names(self.table.loc[[row.Index]], roles=LINEAR_ROLES):
                    self.linear[n] = self._module(n)
                    self.roles[n] = row.role
            elif row.role == "expert" and row.name.endswith(self.spec.names.expert_gate):
                block = self.spec.names.router.rsplit(".", 1)[0]  # "block_sparse_moe"
                for i in row.layers:
                    layer = self.spec.names.layer.format(i=i)
                    self.experts[f"{layer}.{block}"] = self._module(f"{layer}.{block}.experts")
            elif row.role == "attention" and row.name.endswith(".qk"):
                for n in op_names(self.table.loc[[row.Index]], roles=("attention",)):
                    self.attention[n[: -len(".qk")]] = self._module(n[: -len(".qk")])
        self.op_names = set(op_names(self.table)) | set(self.embeds)  # (position tables a model computes are not ops)
        self._orig = {n: m.weight for n, m in (self.linear | self.embeds).items()}
        self._wcache: dict[tuple[str, str], nn.Parameter] = {}
        self._act: dict[str, Format] = {}
        self._hooks = [m.register_forward_pre_hook(self._pre_hook(n)) for n, m in self.linear.items()]
        for block, m in self.experts.items():
            if not (hasattr(m, "gate_up_proj") and hasattr(m, "down_proj")):
                raise InputError(f"{self.spec.name}: {block}.experts is not a fused-experts module (gate_up_proj, "
                                 "down_proj) of transformers 5")
            self._orig[f"{block}.experts"] = (m.gate_up_proj, m.down_proj)
            m._mpq_experts = dict(block=block, fq=self)
            m.forward = _experts_forward.__get__(m)
        _register_attention()
        self._impl = model.config._attn_implementation
        self._set_impl(ATTN_IMPL)

    def _module(self, name: str) -> nn.Module:
        for path in (name, name.replace(".block_sparse_moe.", ".mlp.")):  # transformers 5 renamed Mixtral's MoE block
            try:
                return self.model.get_submodule(path)
            except AttributeError:
                continue
        raise InputError(f"{self.spec.name}: op {name!r} of the op table is not a module of the model")

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
        for block, module in self.experts.items():
            self._apply_experts(block, module, pmap)
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

    def _apply_experts(self, block: str, module: nn.Module, pmap: PrecisionMap) -> None:
        """Each expert's slices of the fused tensors in its weight formats; its input formats for the forward."""
        nm = self.spec.names
        e_n = module.gate_up_proj.shape[0]
        inter = module.gate_up_proj.shape[1] // 2
        layer = block.rsplit(".", 1)[0]
        fmts = {part: [pmap.formats_for(f"{layer}.{getattr(nm, 'expert_' + part).format(e=e)}", "expert")
                       for e in range(e_n)] for part in ("gate", "up", "down")}
        w = {part: [_active(f.weight, self.emulate_high) for f in fs] for part, fs in fmts.items()}
        key = (f"{block}.experts", tuple(tuple(x.name if x else "" for x in w[p]) for p in ("gate", "up", "down")))
        if key not in self._wcache:
            gate_up, down = (t.detach() for t in self._orig[f"{block}.experts"])
            gu, dn = gate_up.clone(), down.clone()
            with torch.no_grad():
                for e in range(e_n):
                    for part, rows in (("gate", slice(0, inter)), ("up", slice(inter, 2 * inter))):
                        if w[part][e] is not None:
                            gu[e, rows] = quantize(gate_up[e, rows], w[part][e], axis=-1)
                            self.calls[(f"{layer}.{getattr(nm, 'expert_' + part).format(e=e)}", "weight",
                                        w[part][e].name)] += 1
                    if w["down"][e] is not None:
                        dn[e] = quantize(down[e], w["down"][e], axis=-1)
                        self.calls[(f"{layer}.{nm.expert_down.format(e=e)}", "weight", w["down"][e].name)] += 1
            self._wcache[key] = (nn.Parameter(gu, requires_grad=False), nn.Parameter(dn, requires_grad=False))
        module.gate_up_proj, module.down_proj = self._wcache[key]
        module._mpq_experts["act"] = {part: [_active(f.act, self.emulate_high) for f in fs] for part, fs in fmts.items()}
        module._mpq_experts["names"] = {part: [f"{layer}.{getattr(nm, 'expert_' + part).format(e=e)}" for e in range(e_n)]
                                        for part in ("gate", "up", "down")}

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
        for block, m in self.experts.items():
            m.gate_up_proj, m.down_proj = self._orig[f"{block}.experts"]
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_mpq_experts", None)
        self._set_impl(self._impl)
        self._wcache.clear()
