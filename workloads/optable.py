"""Op tables: a :class:`ModelSpec` -> one row per op (GenZ-style ops-as-rows DataFrame).

The table is *shape-parametric*: a row holds the op's fixed dimensions (N, K, heads, window,
experts), and :func:`op_counts` turns a row into GEMM shapes, FLOPs and element traffic for a
phase given batch ``B``, new tokens per sequence ``q`` and cached tokens ``past``:

* prefill of a prompt of S tokens: ``q = S, past = 0`` (a chunk: ``q = chunk, past = offset``);
* decode at context C: ``q = 1, past = C - 1`` (the new token attends to all C tokens).

One formula serves both phases. :func:`op_counts` is compiled with Numba and called by the
cost-model kernel too, so the numbers in an op table and the ones priced are the same code.

Identical decoder layers are collapsed into one row with ``repeat`` = number of layers (the
``layers`` column lists them); layers differ only where an op's own dimensions differ (Gemma-2's
alternating sliding-window attention). Op names are the Hugging Face module paths with ``{i}``
for the layer and ``{e}`` for the expert; :func:`op_names` expands them.
"""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache

import numba
import numpy as np
import pandas as pd

from mpqsim import FrozenDict, InputError
from workloads.spec import ModelSpec

# ---------------------------------------------------------------- op kinds and the field registries
LINEAR, EXPERT, QK, AV, SOFTMAX, VECTOR, EMBED, COMM = range(8)
KIND_NAMES = ("linear", "expert", "qk", "av", "softmax", "vector", "embed", "comm")
#: What a communication op does (the ``collective`` code of a ``comm`` row).
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "send_recv", "all_to_all")
#: What an element-wise op computes (the ``ew`` code): how an engine runs it depends on it.
EW_NAMES = ("other", "norm", "rotary", "act", "residual", "routing")
EW_OTHER, EW_NORM, EW_ROTARY, EW_ACT, EW_RESIDUAL, EW_ROUTING = range(len(EW_NAMES))
MATMUL_KINDS = (LINEAR, EXPERT, QK, AV)
ATTENTION_KINDS = (QK, AV, SOFTMAX)
#: Roles whose ops are matmuls a precision map can name (the one list of matmul roles).
MATMUL_ROLES = ("linear", "expert", "router", "attention", "lm_head")

#: The op's own dimensions, read by :func:`op_counts` (field name -> meaning). An op table has
#: one column per field; :func:`op_records` turns it into a NumPy record array of these fields.
SHAPE_FIELDS = {
    "kind": "op kind code (KIND_NAMES)",
    "n": "GEMM output width (embed: table width)",
    "k": "GEMM reduction depth (embed: table rows)",
    "w_elems": "stored weight elements of one instance",
    "b_elems": "stored bias elements of one instance",
    "fpt": "element-wise ops: FLOPs per token",
    "ipt": "element-wise ops: input elements per token",
    "opt": "element-wise ops: output elements per token",
    "ew": "element-wise ops: what they compute (code into EW_NAMES: other, norm, rotary, act, residual, routing)",
    "heads": "attention: query heads",
    "kv_heads": "attention: key/value heads",
    "head_dim": "attention: head dimension",
    "window": "attention: sliding window (0 = whole context)",
    "row_experts": "MoE: experts this row holds (len(expert_ids); 0 for dense rows)",
    "routed_experts": "MoE: routed experts of the model",
    "topk": "MoE: experts per token",
    "last_only": "1 if the op sees only each sequence's last token (lm_head)",
    "collective": "comm ops: what it does (code into COLLECTIVES: all_reduce, all_gather, reduce_scatter, send_recv, all_to_all)",
    "group": "comm ops: devices taking part",
    "repeat": "identical instances (layers) the row stands for",
}
SHAPE_DTYPE = np.dtype([(f, np.float64) for f in SHAPE_FIELDS])

#: What :func:`op_counts` returns for one op instance (one layer, all experts of the row).
COUNT_FIELDS = {
    "m": "GEMM rows (tokens, or query rows per KV head for attention)",
    "n": "GEMM columns",
    "k": "GEMM reduction depth",
    "count": "independent GEMMs of this shape (attention: batch x KV heads; MoE: active experts)",
    "flops": "floating-point operations",
    "w_elems": "weight elements read",
    "b_elems": "bias elements read",
    "in_elems": "input activation elements read",
    "out_elems": "output activation elements written",
    "score_read": "attention-score elements read if the scores are materialised",
    "score_write": "attention-score elements written if the scores are materialised",
    "kv_read": "KV-cache elements read",
    "kv_write": "KV-cache elements written",
}
Counts = namedtuple("Counts", tuple(COUNT_FIELDS))


@numba.njit(cache=True, inline="always")
def attended_pairs(past, q, window):
    """Sum over the q new positions j = past+1 .. past+q of the keys each attends: min(j, window)."""
    hi = past + q
    if window <= 0 or hi <= window:
        return q * past + q * (q + 1) / 2.0
    if past + 1 > window:
        return window * q
    return (window * (window + 1) / 2.0 - past * (past + 1) / 2.0) + window * (hi - window)


@numba.njit(cache=True, inline="always")
def op_counts(op, batch, q, past):
    """Shapes and element counts (:data:`Counts`) of one instance of op record ``op`` (the fields
    of :data:`SHAPE_FIELDS`) for ``batch`` sequences of ``q`` new tokens after ``past`` cached."""
    kind = int(op.kind)
    n = op.n
    k = op.k
    tokens = batch * q
    m = gn = gk = count = flops = w = b = i = o = s_r = s_w = kv_r = kv_w = 0.0
    if kind == LINEAR:
        m = batch if op.last_only > 0 else tokens
        gn = n
        gk = k
        count = 1.0
        flops = 2.0 * m * n * k
        w = op.w_elems
        b = op.b_elems
        i = m * k
        o = m * n
    elif kind == EXPERT:
        e_total = op.routed_experts
        g = op.row_experts
        topk = op.topk
        routed = tokens * topk * g / e_total
        # expected experts of this row that receive at least one token (uniform routing)
        active = g * (1.0 - (1.0 - topk / e_total) ** tokens)
        m = routed / active if active > 0 else 0.0
        gn = n
        gk = k
        count = active
        flops = 2.0 * routed * n * k
        w = active * op.w_elems
        b = active * op.b_elems
        i = routed * k
        o = routed * n
    elif kind == QK or kind == AV or kind == SOFTMAX:
        heads = op.heads
        kvh = op.kv_heads
        hd = op.head_dim
        win = op.window
        ctx = past + q
        kv_len = min(ctx, win + q - 1.0) if win > 0 else ctx
        pairs = batch * attended_pairs(past, q, win)
        scores = pairs * heads
        m = q * heads / kvh
        count = batch * kvh
        if kind == SOFTMAX:
            m = tokens
            count = 1.0
            flops = 5.0 * pairs * heads
            s_r = scores
            s_w = scores
        else:
            flops = 2.0 * heads * hd * pairs
            kv_r = batch * kv_len * kvh * hd
            kv_w = tokens * kvh * hd
            if kind == QK:
                gn = kv_len
                gk = hd
                i = tokens * heads * hd
                s_w = scores
            else:
                gn = hd
                gk = kv_len
                s_r = scores
                o = tokens * heads * hd
    elif kind == COMM:  # a collective over the buffer of n elements per token (the whole buffer, one device's view)
        m = batch if op.last_only > 0 else tokens
        count = 1.0
        i = m * n
    elif kind == VECTOR:
        m = tokens
        count = 1.0
        flops = op.fpt * tokens
        w = op.w_elems
        b = op.b_elems
        i = op.ipt * tokens
        o = op.opt * tokens
    else:  # EMBED: gather rows of an (k = rows) x (n = width) table
        m = tokens
        count = 1.0
        w = min(tokens, k) * n
        o = tokens * n
    return Counts(m=m, n=gn, k=gk, count=count, flops=flops, w_elems=w, b_elems=b, in_elems=i,
                  out_elems=o, score_read=s_r, score_write=s_w, kv_read=kv_r, kv_write=kv_w)


# ---------------------------------------------------------------- building the table
def _norm_cost(spec: ModelSpec, width: int) -> dict:
    """RMSNorm: square, sum, rsqrt, scale, weight (~4 FLOP/elem); LayerNorm ~8 with mean and bias."""
    layer = spec.norm == "layer"
    return dict(fpt=(8 if layer else 4) * width, ipt=width, opt=width, w_elems=width,
                b_elems=width if layer else 0, params=width * (2 if layer else 1), ew=EW_NORM)


def _layer_ops(spec: ModelSpec) -> list[dict]:
    """Rows of one decoder layer, in execution order. Names are relative to the layer prefix."""
    nm, h, inter = spec.names, spec.hidden, spec.intermediate
    a = nm.attn
    bias = 1 if spec.bias else 0
    qkv_bias = 1 if (spec.bias or spec.qkv_bias) else 0

    def linear(name, n, k, b=bias):
        return dict(name=name, role="linear", kind=LINEAR, n=n, k=k, w_elems=n * k, b_elems=n * b,
                    params=n * k + n * b)

    def vector(name, fpt, ipt, opt, w=0, b=0, ew=EW_OTHER):
        return dict(name=name, role="vector", kind=VECTOR, ew=ew, fpt=fpt, ipt=ipt, opt=opt, w_elems=w,
                    b_elems=b, params=w + b)

    attn = dict(heads=spec.heads, kv_heads=spec.kv_heads, head_dim=spec.head_dim)
    rows = [dict(name=nm.norms[0], role="vector", kind=VECTOR, **_norm_cost(spec, h))]
    if nm.qkv:
        rows.append(linear(f"{a}.{nm.qkv}", spec.q_dim + 2 * spec.kv_dim, h, qkv_bias))
    else:
        rows += [linear(f"{a}.{nm.q}", spec.q_dim, h, qkv_bias),
                 linear(f"{a}.{nm.k}", spec.kv_dim, h, qkv_bias),
                 linear(f"{a}.{nm.v}", spec.kv_dim, h, qkv_bias)]
    if spec.qk_norm:
        for part, width in (("q_norm", spec.q_dim), ("k_norm", spec.kv_dim)):
            rows.append(vector(f"{a}.{part}", 4 * width, width, width, w=spec.head_dim, ew=EW_NORM))
    if spec.position == "rope":
        rot = spec.q_dim + spec.kv_dim
        rows.append(vector(f"{a}.rotary_emb", 3 * rot, rot, rot, ew=EW_ROTARY))
    rows += [dict(name=f"{a}.qk", role="attention", kind=QK, **attn),
             dict(name=f"{a}.softmax", role="vector", kind=SOFTMAX, **attn),
             dict(name=f"{a}.av", role="attention", kind=AV, **attn),
             linear(f"{a}.{nm.o}", h, spec.q_dim)]
    for extra in nm.norms[2:3]:  # Gemma-2 norms the attention output before the residual
        rows.append(dict(name=extra, role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    rows.append(vector("residual_attn", h, 2 * h, h, ew=EW_RESIDUAL))
    rows.append(dict(name=nm.norms[1], role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    for extra in nm.norms[3:]:
        rows.append(dict(name=extra, role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    act_in = (2 if spec.gated else 1) * inter
    act_flops = (5 if spec.gated else 4) * inter
    if spec.routed_experts:
        e, topk = spec.routed_experts, spec.experts_per_token
        block = nm.router.rsplit(".", 1)[0]  # "block_sparse_moe"
        moe = dict(role="expert", kind=EXPERT, routed_experts=e, topk=topk, w_elems=inter * h, params=inter * h)
        # each token runs top-k experts: the activation sees k x the tokens
        rows += [linear(nm.router, e, h, 0) | dict(role="router"),
                 vector(f"{block}.routing", 5 * e, e, 2 * topk, ew=EW_ROUTING),
                 dict(name=nm.expert_gate, n=inter, k=h, **moe),
                 dict(name=nm.expert_up, n=inter, k=h, **moe),
                 vector(f"{block}.act_fn", act_flops * topk, act_in * topk, inter * topk, ew=EW_ACT),
                 dict(name=nm.expert_down, n=h, k=inter, **moe)]
    else:
        if nm.gate:
            rows.append(linear(nm.gate, inter, h))
        rows += [linear(nm.up, inter, h), vector(nm.act, act_flops, act_in, inter, ew=EW_ACT),
                 linear(nm.down, h, inter)]
    rows.append(vector("residual_mlp", h, 2 * h, h, ew=EW_RESIDUAL))
    return rows


def build_optable(spec: ModelSpec) -> pd.DataFrame:
    """The op table of a model: one row per op (identical layers collapsed, ``repeat`` = count).

    Columns: ``name`` (template), ``role`` (linear, expert, router, attention, lm_head, vector,
    embed), ``kind`` (code, see :data:`KIND_NAMES`), ``layers`` (tuple of layer indices),
    ``expert_ids`` (tuple of the expert indices the row holds, empty for dense ops), ``repeat``,
    ``row_experts`` (= len(expert_ids)), ``params`` (stored parameters of one instance; 0 for a
    tied lm_head) and the shape fields of :data:`SHAPE_FIELDS`. How an op is run (kernels,
    fusion, launches) is not part of the table: that is :func:`sim.lowering.lower`'s business.

    Memoised on the (frozen) spec; every call returns a fresh copy of the table.
    """
    return _frame(model_rows(spec), spec.name)


@lru_cache(maxsize=256)
def model_rows(spec: ModelSpec, layout=None) -> tuple:
    """The op table of ``spec`` as complete, read-only row dicts (one per table row; memoised);
    with a :class:`workloads.parallel.Layout`, one device's rows (sharded, communication added)."""
    rows = _complete_rows(_spec_rows(spec))
    if layout is not None and not layout.trivial:
        from workloads.parallel import parallel_rows

        rows = _complete_rows([{k: v for k, v in r.items() if k not in ("repeat", "row_experts")}
                               for r in parallel_rows(spec, rows, layout)])
    return tuple(FrozenDict(r) for r in rows)


def _spec_rows(spec: ModelSpec) -> list:
    nm, h = spec.names, spec.hidden
    e = spec.embed_dim or h  # width of the token embedding (and of lm_head's input)
    rows: list[dict] = []
    rows.append(dict(name=nm.embed, role="embed", kind=EMBED, n=e, k=spec.vocab, params=spec.vocab * e, layers=()))
    if nm.pos_embed:
        npos = spec.max_positions + spec.pos_offset
        rows.append(dict(name=nm.pos_embed, role="embed", kind=EMBED, n=h, k=npos, params=npos * h,
                         layers=()))
    if spec.embed_dim:
        if not nm.project_in:
            raise InputError(f"{spec.name}: embedding width {e} differs from hidden size {h}, which "
                             f"{spec.arch} does not project")
        rows.append(dict(name=nm.project_in, role="linear", kind=LINEAR, n=h, k=e, w_elems=h * e, params=h * e,
                         layers=()))
    prefix = nm.layer
    for op in _layer_ops(spec):
        attn_kind = op["kind"] in ATTENTION_KINDS
        groups: dict[int, list[int]] = {}
        for i in range(spec.layers):
            groups.setdefault(spec.window[i] if attn_kind else 0, []).append(i)
        for win, layers in groups.items():
            row = dict(op, name=f"{prefix}.{op['name']}", layers=tuple(layers), window=win)
            if op["kind"] == EXPERT:
                row["expert_ids"] = tuple(range(spec.routed_experts))
            rows.append(row)
    rows.append(dict(name=nm.final_norm, layers=(), role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    if spec.embed_dim:
        rows.append(dict(name=nm.project_out, role="linear", kind=LINEAR, n=e, k=h, w_elems=h * e, params=h * e,
                         last_only=1, layers=()))
    head = dict(name=nm.lm_head, role="lm_head", kind=LINEAR, n=spec.vocab, k=e,
                w_elems=spec.vocab * e, params=0 if spec.tied_embeddings else spec.vocab * e,
                last_only=1, layers=())
    rows.append(head)
    return rows


#: Columns a row given to :func:`table_from_rows` may set, with their defaults (``name``, ``role``
#: and ``kind`` are required).
ROW_DEFAULTS = dict(layers=(), expert_ids=(), params=0, n=0, k=0, w_elems=0, b_elems=0, fpt=0, ipt=0, opt=0, ew=0,
                    heads=0, kv_heads=0, head_dim=0, window=0, routed_experts=0, topk=0, last_only=0, collective=0,
                    group=0)
TABLE_COLUMNS = ("name", "role", "kind", "layers", "expert_ids", "repeat", "row_experts", "params",
                 *(f for f in SHAPE_FIELDS if f not in ("kind", "repeat", "row_experts")))


def table_from_rows(rows, model: str = "custom") -> pd.DataFrame:
    """An op table from row dicts (``name``, ``role``, ``kind`` and the fields of
    :data:`ROW_DEFAULTS` that apply; missing ones take their defaults, unknown ones are an error).

    ``repeat`` = number of layers (at least 1) and ``row_experts`` = number of expert ids. Used by
    :func:`build_optable` and for ad-hoc tables such as a single GEMM.
    """
    return _frame(_complete_rows(rows), model)


def _frame(full_rows, model: str) -> pd.DataFrame:
    df = pd.DataFrame({c: [r[c] for r in full_rows] for c in TABLE_COLUMNS})
    df.attrs["model"] = model  # plain values only: pandas deep-copies attrs on every operation
    return df


def _complete_rows(rows) -> list[dict]:
    out = []
    for r in rows:
        unknown = set(r) - set(ROW_DEFAULTS) - {"name", "role", "kind"}
        if unknown:
            raise InputError(f"op row {r.get('name', '?')!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                             f"valid: name, role, kind, {', '.join(ROW_DEFAULTS)}")
        if r.get("kind") not in range(len(KIND_NAMES)) or r.get("role") is None or r.get("name") is None:
            raise InputError(f"op row {r.get('name', '?')!r} needs a name, a role and a kind code 0..{len(KIND_NAMES) - 1}")
        full = ROW_DEFAULTS | r
        layers = tuple(full["layers"] or ())
        experts = tuple(full["expert_ids"] or ())
        full.update(layers=layers, expert_ids=experts, repeat=max(1, len(layers)), row_experts=len(experts))
        out.append({c: full[c] for c in TABLE_COLUMNS})
    return out


def op_records(table, dtype: np.dtype = SHAPE_DTYPE) -> np.ndarray:
    """The op table (a DataFrame, or its rows as dicts) as a NumPy record array of ``dtype``'s fields.

    ``dtype`` must hold the :data:`SHAPE_FIELDS`; fields it adds beyond them (e.g. the cost
    model's format bytes) are left 0 for the caller.
    """
    rec = np.zeros(len(table), dtype=dtype)
    if isinstance(table, pd.DataFrame):
        for f in SHAPE_FIELDS:
            rec[f] = table[f].to_numpy()
    else:
        for f in SHAPE_FIELDS:
            rec[f] = [r[f] for r in table]
    return rec


def total_params(table: pd.DataFrame) -> float:
    """Stored parameters of the model (tied embeddings counted once)."""
    inst = table["repeat"] * np.maximum(table["row_experts"], 1)
    return float((table["params"] * inst).sum())


def op_names(table, roles=MATMUL_ROLES) -> list[str]:
    """Concrete op names (``{i}``/``{e}`` expanded) of the rows (a DataFrame or row dicts) whose role is in ``roles``."""
    out = []
    cols = (table["name"], table["role"], table["layers"], table["expert_ids"]) if isinstance(table, pd.DataFrame) \
        else zip(*((r["name"], r["role"], r["layers"], r["expert_ids"]) for r in table))
    for name, role, layers, experts in zip(*cols):
        if role not in roles:
            continue
        for i in layers or (None,):
            for e in experts or (None,):
                out.append(name.format(i=i, e=e))
    return out


def counts(table: pd.DataFrame, batch: int, q: int, past: int) -> pd.DataFrame:
    """Per-op shapes and element counts for one phase (per instance; ``repeat`` multiplies).

    Adds the columns of :data:`COUNT_FIELDS` (``n``, ``k``, ``w_elems``, ``b_elems`` replaced
    by the phase's values) to the table; totals are left to the caller (multiply by ``repeat``).
    """
    ops = op_records(table)
    res = [op_counts(ops[j], float(batch), float(q), float(past)) for j in range(len(table))]
    out = table.drop(columns=["n", "k", "w_elems", "b_elems"]).copy()
    for name in COUNT_FIELDS:
        out[name] = np.array([getattr(r, name) for r in res], dtype=float)
    return out
