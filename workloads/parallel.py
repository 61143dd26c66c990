"""Parallel layouts: the op table of one device of a tensor-, pipeline- and expert-parallel model.

:func:`parallel_rows` turns a model's rows into one device's rows under a :class:`Layout`, the
Megatron way (as vLLM and TensorRT-LLM run inference):

* **tensor parallelism** (``tp`` devices): q/k/v (or the fused qkv), gate and up projections are
  column-parallel (``n / tp``), o and down projections row-parallel (``k / tp``) followed by an
  **all-reduce** of the hidden state (one after attention, one after the MLP); query heads split
  ``heads / tp``; KV heads split ``kv_heads / tp``, or, with fewer KV heads than devices (GQA),
  replicated so each device holds one (``tp`` a multiple of ``kv_heads``); the embedding and the
  lm_head are vocabulary-parallel (an all-reduce after the embedding, an all-gather of the
  logits); norms, residuals and the MoE router run replicated on the full hidden state. MoE
  experts are sharded like the MLP, or with ``ep`` split whole over the group (``experts / tp``
  each), with an **all-to-all** to dispatch the tokens and one to combine them.
* **pipeline parallelism** (``pp`` stages): layers split into contiguous stages; a
  **send/recv** of the hidden state between consecutive stages (the ``pipeline.send_recv`` row,
  ``pp - 1`` instances). The rows still hold every layer: a pass through the table is one
  micro-batch's trip through the whole pipeline; :func:`stage_of_layer` says which stage holds
  a layer (per-device memory is the largest stage's).

Communication ops are ordinary rows (kind ``comm``): ``n`` elements per token in the format of
the tensor they move (the map's high format: the output of the op before them), ``collective``
and ``group`` (devices taking part). ``Layout()`` (1 x 1) leaves the rows unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpqsim import InputError
from workloads.optable import AV, COLLECTIVES, COMM, EMBED, EW_ACT, EW_NORM, EW_ROTARY, EXPERT, LINEAR, QK, SOFTMAX, VECTOR


@dataclass(frozen=True)
class Layout:
    """How a model is spread over devices: ``tp`` x ``pp`` devices per replica.

    ``ep``: MoE experts split whole over the tensor-parallel group (expert parallelism) instead of
    each expert sharded. ``devices_per_node``: devices in one scale-up domain (NVSwitch node);
    None = the device's own (its interconnect's ``domain``).
    """

    tp: int = 1
    pp: int = 1
    ep: bool = False
    devices_per_node: int | None = None

    def __post_init__(self):
        for what, v in (("tensor-parallel degree (--tp)", self.tp), ("pipeline stages (--pp)", self.pp)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{what} must be a whole number >= 1, got {v!r}")
        if self.devices_per_node is not None and (not isinstance(self.devices_per_node, int) or self.devices_per_node < 1):
            raise InputError(f"devices per node must be a whole number >= 1, got {self.devices_per_node!r}")

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    @property
    def trivial(self) -> bool:
        return self.tp == 1 and self.pp == 1

    def __str__(self) -> str:
        return f"tp{self.tp}" + (f"xpp{self.pp}" if self.pp > 1 else "") + ("+ep" if self.ep else "")


def local_heads(spec, tp: int) -> tuple[int, int]:
    """(query heads, KV heads) on one device of a ``tp``-way tensor-parallel group."""
    if spec.heads % tp:
        raise InputError(f"{spec.name} has {spec.heads} attention heads, which {tp} devices cannot split evenly; "
                         f"valid --tp: {', '.join(str(t) for t in range(1, spec.heads + 1) if spec.heads % t == 0 and t <= 64)}")
    if spec.kv_heads % tp == 0:
        return spec.heads // tp, spec.kv_heads // tp
    if tp % spec.kv_heads == 0:  # GQA with fewer KV heads than devices: each device holds one, replicated
        return spec.heads // tp, 1
    raise InputError(f"{spec.name} has {spec.kv_heads} KV heads: --tp {tp} must divide them or be a multiple of them")


def tp_degrees(spec, most: int) -> list[int]:
    """The tensor-parallel degrees (powers of two up to ``most`` devices) that split ``spec``'s heads."""
    out = []
    for t in (1, 2, 4, 8, 16, 32, 64):
        if t > most:
            break
        try:
            local_heads(spec, t)
        except InputError:
            continue
        out.append(t)
    return out


def stage_of_layer(layer: int, layers: int, pp: int) -> int:
    """The pipeline stage (0-based) holding decoder layer ``layer`` of ``layers`` (contiguous, the
    first stages one layer longer when ``pp`` does not divide them)."""
    base, extra = divmod(layers, pp)
    cut = extra * (base + 1)
    return layer // (base + 1) if layer < cut else extra + (layer - cut) // max(base, 1)


def _comm(name: str, collective: str, n: float, group: int, layers=(), last_only: int = 0) -> dict:
    return dict(name=name, role="comm", kind=COMM, n=n, collective=COLLECTIVES.index(collective), group=group,
                layers=tuple(layers), last_only=last_only)


def parallel_rows(spec, rows, layout: Layout) -> list[dict]:
    """One device's rows of ``spec``'s op table (``rows``, complete row dicts) under ``layout``."""
    if layout.trivial:
        return [dict(r) for r in rows]
    if layout.pp > spec.layers:
        raise InputError(f"--pp {layout.pp} exceeds {spec.name}'s {spec.layers} layers")
    t = layout.tp
    nm = spec.names
    hd = spec.head_dim
    h_l, kv_l = local_heads(spec, t)
    q_l, kv_dim_l = h_l * hd, kv_l * hd
    inter = spec.intermediate
    if inter % t:
        raise InputError(f"{spec.name}'s MLP width {inter} does not split over --tp {t}")
    if layout.ep and not spec.routed_experts:
        raise InputError(f"--ep (expert parallelism) needs a mixture-of-experts model; {spec.name} has no experts")
    if layout.ep and spec.routed_experts % t:
        raise InputError(f"{spec.name}'s {spec.routed_experts} experts do not split over --tp {t} with --ep")
    a = f"{nm.layer}.{nm.attn}"

    def is_(row, part):
        return bool(part) and row["name"] == f"{a}.{part}"

    def mlp(row, part):
        return bool(part) and row["name"] == f"{nm.layer}.{part}"

    def linear(row, n, k):
        b = n if row["b_elems"] else 0
        return dict(row, n=n, k=k, w_elems=n * k, b_elems=b, params=(n * k + b) if row["params"] else 0)

    out = []
    for r in rows:
        r = dict(r)
        kind = r["kind"]
        if t > 1:
            if kind == LINEAR and (is_(r, nm.q)):
                r = linear(r, q_l, r["k"])
            elif kind == LINEAR and (is_(r, nm.k) or is_(r, nm.v)):
                r = linear(r, kv_dim_l, r["k"])
            elif kind == LINEAR and is_(r, nm.qkv):
                r = linear(r, q_l + 2 * kv_dim_l, r["k"])
            elif kind == LINEAR and is_(r, nm.o):
                r = linear(r, r["n"], q_l)
                r["b_elems"] = spec.hidden if r["b_elems"] else 0  # a row-parallel bias is added once: every device holds it
                out += [r, _comm(f"{nm.layer}.tp_all_reduce_attn", "all_reduce", spec.hidden, t, r["layers"])]
                continue
            elif kind in (QK, AV, SOFTMAX):
                r.update(heads=h_l, kv_heads=kv_l)
            elif kind == VECTOR and r["ew"] == EW_ROTARY:
                rot = q_l + kv_dim_l
                r.update(fpt=3 * rot, ipt=rot, opt=rot)
            elif kind == VECTOR and r["ew"] == EW_NORM and r["name"].endswith(("q_norm", "k_norm")):
                width = q_l if r["name"].endswith("q_norm") else kv_dim_l
                r.update(fpt=4 * width, ipt=width, opt=width)
            elif kind == LINEAR and (mlp(r, nm.gate) or mlp(r, nm.up)):
                r = linear(r, inter // t, r["k"])
            elif kind == LINEAR and mlp(r, nm.down):
                r = linear(r, r["n"], inter // t)
                r["b_elems"] = spec.hidden if r["b_elems"] else 0
                out += [r, _comm(f"{nm.layer}.tp_all_reduce_mlp", "all_reduce", spec.hidden, t, r["layers"])]
                continue
            elif kind == VECTOR and r["ew"] == EW_ACT:
                r.update(fpt=r["fpt"] / t, ipt=r["ipt"] / t, opt=r["opt"] / t)
            elif kind == EXPERT and not layout.ep:
                n, k = (r["n"], inter // t) if r["name"].endswith(nm.expert_down) else (inter // t, r["k"])
                r.update(n=n, k=k, w_elems=n * k, params=n * k)
            elif kind == EXPERT:  # expert parallelism: this device holds experts / tp whole experts
                ids = r["expert_ids"][: len(r["expert_ids"]) // t]
                is_gate = r["name"].endswith(nm.expert_gate)
                if is_gate:
                    out.append(_comm(f"{nm.layer}.ep_dispatch", "all_to_all", spec.hidden * spec.experts_per_token, t,
                                     r["layers"]))
                r["expert_ids"] = ids
                out.append(r)
                if r["name"].endswith(nm.expert_down):
                    out.append(_comm(f"{nm.layer}.ep_combine", "all_to_all", spec.hidden * spec.experts_per_token, t,
                                     r["layers"]))
                continue
            elif kind == EMBED and r["name"] == nm.embed:
                vocab = -(-r["k"] // t)
                r.update(k=vocab, params=vocab * r["n"])
                out += [r, _comm("tp_all_reduce_embed", "all_reduce", r["n"], t)]
                continue
            elif kind == LINEAR and r["name"] == nm.lm_head:
                vocab = -(-r["n"] // t)
                r = dict(linear(r, vocab, r["k"]), params=vocab * r["k"] if r["params"] else 0)
                out += [r, _comm("tp_all_gather_logits", "all_gather", spec.vocab, t, last_only=1)]
                continue
        out.append(r)
    if layout.pp > 1:
        out.append(_comm("pipeline.send_recv", "send_recv", spec.hidden, 2, tuple(range(layout.pp - 1))))
    return out


__all__ = ["Layout", "parallel_rows", "local_heads", "stage_of_layer"]
