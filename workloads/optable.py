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

import numba
import numpy as np
import pandas as pd

from mpqsim import InputError
from workloads.spec import ModelSpec

# ---------------------------------------------------------------- op kinds and array fields
LINEAR, EXPERT, QK, AV, SOFTMAX, VECTOR, EMBED = range(7)
KIND_NAMES = ("linear", "expert", "qk", "av", "softmax", "vector", "embed")
MATMUL_KINDS = (LINEAR, EXPERT, QK, AV)

#: Columns of the numeric op array, in order (see :func:`op_array`).
OP_FIELDS = ("kind", "n", "k", "w_elems", "b_elems", "fpt", "ipt", "opt", "heads", "kv_heads",
             "head_dim", "window", "experts", "experts_total", "topk", "last_only", "fused",
             "launches", "repeat")
(F_KIND, F_N, F_K, F_W, F_B, F_FPT, F_IPT, F_OPT, F_HEADS, F_KVH, F_HD, F_WIN, F_EXP, F_EXPT,
 F_TOPK, F_LAST, F_FUSED, F_LAUNCH, F_REPEAT) = range(len(OP_FIELDS))

#: What :func:`op_counts` writes per op instance (one layer, all experts of the row).
COUNT_FIELDS = ("m", "n", "k", "count", "flops", "w_elems", "b_elems", "in_elems", "out_elems",
                "kv_read", "kv_write")
(C_M, C_N, C_K, C_COUNT, C_FLOPS, C_W, C_B, C_IN, C_OUT, C_KVR, C_KVW) = range(len(COUNT_FIELDS))


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
def op_counts(ops, j, batch, q, past, out):
    """Shapes and element counts of op ``j`` (one instance) for batch, q new tokens, past cached."""
    kind = int(ops[j, F_KIND])
    n = ops[j, F_N]
    k = ops[j, F_K]
    tokens = batch * q
    for c in range(out.shape[0]):
        out[c] = 0.0
    if kind == LINEAR:
        m = batch if ops[j, F_LAST] > 0 else tokens
        out[C_M] = m
        out[C_N] = n
        out[C_K] = k
        out[C_COUNT] = 1.0
        out[C_FLOPS] = 2.0 * m * n * k
        out[C_W] = ops[j, F_W]
        out[C_B] = ops[j, F_B]
        out[C_IN] = m * k
        out[C_OUT] = m * n
    elif kind == EXPERT:
        e_total = ops[j, F_EXPT]
        g = ops[j, F_EXP]
        topk = ops[j, F_TOPK]
        routed = tokens * topk * g / e_total
        # expected experts of this row that receive at least one token (uniform routing)
        active = g * (1.0 - (1.0 - topk / e_total) ** tokens)
        out[C_M] = routed / active if active > 0 else 0.0
        out[C_N] = n
        out[C_K] = k
        out[C_COUNT] = active
        out[C_FLOPS] = 2.0 * routed * n * k
        out[C_W] = active * ops[j, F_W]
        out[C_B] = active * ops[j, F_B]
        out[C_IN] = routed * k
        out[C_OUT] = routed * n
    elif kind == QK or kind == AV or kind == SOFTMAX:
        heads = ops[j, F_HEADS]
        kvh = ops[j, F_KVH]
        hd = ops[j, F_HD]
        win = ops[j, F_WIN]
        ctx = past + q
        kv_len = min(ctx, win + q - 1.0) if win > 0 else ctx
        pairs = batch * attended_pairs(past, q, win)
        fused = ops[j, F_FUSED] > 0
        scores = 0.0 if fused else pairs * heads
        out[C_M] = q * heads / kvh
        out[C_COUNT] = batch * kvh
        if kind == SOFTMAX:
            out[C_M] = tokens
            out[C_COUNT] = 1.0
            out[C_FLOPS] = 5.0 * pairs * heads
            out[C_IN] = scores
            out[C_OUT] = scores
        else:
            out[C_FLOPS] = 2.0 * heads * hd * pairs
            out[C_KVR] = batch * kv_len * kvh * hd
            out[C_KVW] = tokens * kvh * hd
            if kind == QK:
                out[C_N] = kv_len
                out[C_K] = hd
                out[C_IN] = tokens * heads * hd
                out[C_OUT] = scores
            else:
                out[C_N] = hd
                out[C_K] = kv_len
                out[C_IN] = scores
                out[C_OUT] = tokens * heads * hd
    elif kind == VECTOR:
        out[C_M] = tokens
        out[C_COUNT] = 1.0
        out[C_FLOPS] = ops[j, F_FPT] * tokens
        out[C_W] = ops[j, F_W]
        out[C_B] = ops[j, F_B]
        out[C_IN] = ops[j, F_IPT] * tokens
        out[C_OUT] = ops[j, F_OPT] * tokens
    else:  # EMBED: gather rows of an (k = rows) x (n = width) table
        out[C_M] = tokens
        out[C_COUNT] = 1.0
        out[C_W] = min(tokens, k) * n
        out[C_OUT] = tokens * n


# ---------------------------------------------------------------- building the table
def _norm_cost(spec: ModelSpec, width: int) -> dict:
    """RMSNorm: square, sum, rsqrt, scale, weight (~4 FLOP/elem); LayerNorm ~8 with mean and bias."""
    layer = spec.norm == "layer"
    return dict(fpt=(8 if layer else 4) * width, ipt=width, opt=width, w_elems=width,
                b_elems=width if layer else 0, params=width * (2 if layer else 1))


def _layer_ops(spec: ModelSpec, fused_attention: bool) -> list[dict]:
    """Rows of one decoder layer, in execution order. Names are relative to the layer prefix."""
    nm, h, inter = spec.names, spec.hidden, spec.intermediate
    a = nm.attn
    bias = 1 if spec.bias else 0
    qkv_bias = 1 if (spec.bias or spec.qkv_bias) else 0

    def linear(name, n, k, b=bias):
        return dict(name=name, role="linear", kind=LINEAR, n=n, k=k, w_elems=n * k, b_elems=n * b,
                    params=n * k + n * b)

    def vector(name, fpt, ipt, opt, w=0, b=0):
        return dict(name=name, role="vector", kind=VECTOR, fpt=fpt, ipt=ipt, opt=opt, w_elems=w,
                    b_elems=b, params=w + b)

    attn = dict(heads=spec.heads, kv_heads=spec.kv_heads, head_dim=spec.head_dim,
                fused=int(fused_attention))
    rows = [dict(name=nm.norms[0], role="vector", kind=VECTOR, **_norm_cost(spec, h))]
    if nm.qkv:
        rows.append(linear(f"{a}.{nm.qkv}", spec.q_dim + 2 * spec.kv_dim, h, qkv_bias))
    else:
        rows += [linear(f"{a}.{nm.q}", spec.q_dim, h, qkv_bias),
                 linear(f"{a}.{nm.k}", spec.kv_dim, h, qkv_bias),
                 linear(f"{a}.{nm.v}", spec.kv_dim, h, qkv_bias)]
    if spec.qk_norm:
        for part, width in (("q_norm", spec.q_dim), ("k_norm", spec.kv_dim)):
            rows.append(vector(f"{a}.{part}", 4 * width, width, width, w=spec.head_dim))
    if spec.position == "rope":
        rot = spec.q_dim + spec.kv_dim
        rows.append(vector(f"{a}.rotary_emb", 3 * rot, rot, rot))
    rows += [dict(name=f"{a}.qk", role="attention", kind=QK, **attn),
             dict(name=f"{a}.softmax", role="vector", kind=SOFTMAX, **attn,
                  launches=0 if fused_attention else 1),
             dict(name=f"{a}.av", role="attention", kind=AV, **attn,
                  launches=0 if fused_attention else 1),
             linear(f"{a}.{nm.o}", h, spec.q_dim)]
    for extra in nm.norms[2:3]:  # Gemma-2 norms the attention output before the residual
        rows.append(dict(name=extra, role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    rows.append(vector("residual_attn", h, 2 * h, h))
    rows.append(dict(name=nm.norms[1], role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    for extra in nm.norms[3:]:
        rows.append(dict(name=extra, role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    act_in = (2 if spec.gated else 1) * inter
    act_flops = (5 if spec.gated else 4) * inter
    if spec.experts:
        e, topk = spec.experts, spec.experts_per_token
        block = nm.router.rsplit(".", 1)[0]  # "block_sparse_moe"
        moe = dict(role="expert", kind=EXPERT, experts_total=e, topk=topk, w_elems=inter * h, params=inter * h)
        # each token runs top-k experts: the activation sees k x the tokens
        rows += [linear(nm.router, e, h, 0) | dict(role="router"),
                 vector(f"{block}.routing", 5 * e, e, 2 * topk),
                 dict(name=nm.expert_gate, n=inter, k=h, **moe),
                 dict(name=nm.expert_up, n=inter, k=h, **moe),
                 vector(f"{block}.act_fn", act_flops * topk, act_in * topk, inter * topk),
                 dict(name=nm.expert_down, n=h, k=inter, **moe)]
    else:
        if nm.gate:
            rows.append(linear(nm.gate, inter, h))
        rows += [linear(nm.up, inter, h), vector(nm.act, act_flops, act_in, inter),
                 linear(nm.down, h, inter)]
    rows.append(vector("residual_mlp", h, 2 * h, h))
    return rows


def build_optable(spec: ModelSpec, fused_attention: bool = True) -> pd.DataFrame:
    """The op table of a model: one row per op (identical layers collapsed, ``repeat`` = count).

    Columns: ``name`` (template), ``role`` (linear, expert, router, attention, lm_head, vector,
    embed), ``kind`` (code, see :data:`KIND_NAMES`), ``layers`` (tuple of layer indices),
    ``experts`` (tuple of expert indices, empty for dense ops), ``repeat``, the numeric fields of
    :data:`OP_FIELDS`, and ``params`` (stored parameters of one instance; 0 for a tied lm_head).
    """
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
    for op in _layer_ops(spec, fused_attention):
        attn_kind = op["kind"] in (QK, AV, SOFTMAX)
        groups: dict[int, list[int]] = {}
        for i in range(spec.layers):
            groups.setdefault(spec.window[i] if attn_kind else 0, []).append(i)
        for win, layers in groups.items():
            row = dict(op, name=f"{prefix}.{op['name']}", layers=tuple(layers), window=win)
            if op["kind"] == EXPERT:
                row["experts"] = tuple(range(spec.experts))
            rows.append(row)
    rows.append(dict(name=nm.final_norm, layers=(), role="vector", kind=VECTOR, **_norm_cost(spec, h)))
    if spec.embed_dim:
        rows.append(dict(name=nm.project_out, role="linear", kind=LINEAR, n=e, k=h, w_elems=h * e, params=h * e,
                         last_only=1, layers=()))
    head = dict(name=nm.lm_head, role="lm_head", kind=LINEAR, n=spec.vocab, k=e,
                w_elems=spec.vocab * e, params=0 if spec.tied_embeddings else spec.vocab * e,
                last_only=1, layers=())
    rows.append(head)
    return table_from_rows(rows, spec.name)


def table_from_rows(rows: list[dict], model: str = "custom") -> pd.DataFrame:
    """An op table from row dicts (``name``, ``role``, ``kind`` and the fields that apply).

    Missing numeric fields default to 0 (``launches`` to 1), ``layers``/``experts`` to empty;
    used by :func:`build_optable` and for ad-hoc tables such as a single GEMM.
    """
    df = pd.DataFrame(rows)
    if "layers" not in df:
        df["layers"] = None
    df["layers"] = [x if isinstance(x, tuple) else () for x in df["layers"]]
    defaults = dict(b_elems=0, w_elems=0, fpt=0, ipt=0, opt=0, heads=0, kv_heads=0, head_dim=0,
                    window=0, experts_total=0, topk=0, last_only=0, fused=0, launches=1, n=0, k=0,
                    params=0)
    for col, val in defaults.items():
        df[col] = df[col].fillna(val) if col in df else val
    if "experts" not in df:
        df["experts"] = None
    df["experts"] = [e if isinstance(e, tuple) else () for e in df["experts"]]
    df["repeat"] = [max(1, len(ls)) for ls in df["layers"]]
    df["n_experts"] = [len(e) for e in df["experts"]]
    df.attrs["model"] = model  # plain values only: pandas deep-copies attrs on every operation
    cols = ["name", "role", "kind", "layers", "experts", "repeat", "n_experts", "params"]
    cols += [c for c in OP_FIELDS if c not in ("kind", "repeat", "experts")]
    df = df[cols].rename(columns={"n_experts": "experts_n"})
    df["experts_n"] = df["experts_n"].astype(int)
    return df.reset_index(drop=True)


def op_array(table: pd.DataFrame) -> np.ndarray:
    """The numeric fields of an op table as a C-contiguous float64 array (rows x OP_FIELDS)."""
    t = table.assign(experts=np.maximum(table["experts_n"], 1) if "experts_n" in table else 1)
    return np.ascontiguousarray(t[list(OP_FIELDS)].to_numpy(dtype=np.float64))


def total_params(table: pd.DataFrame) -> float:
    """Stored parameters of the model (tied embeddings counted once)."""
    inst = table["repeat"] * np.maximum(table["experts_n"], 1)
    return float((table["params"] * inst).sum())


def op_names(table: pd.DataFrame, roles=("linear", "expert", "router", "attention", "lm_head")) -> list[str]:
    """Concrete op names (``{i}``/``{e}`` expanded) of the rows whose role is in ``roles``."""
    out = []
    for row in table.itertuples():
        if row.role not in roles:
            continue
        for i in row.layers or (None,):
            for e in row.experts or (None,):
                out.append(row.name.format(i=i, e=e))
    return out


def counts(table: pd.DataFrame, batch: int, q: int, past: int) -> pd.DataFrame:
    """Per-op shapes and element counts for one phase (per instance; ``repeat`` multiplies).

    Adds the columns of :data:`COUNT_FIELDS` (``m``, ``n``, ``k`` overwritten by the GEMM shape)
    to the table; ``flops_total`` etc. are left to the caller (multiply by ``repeat``).
    """
    ops = op_array(table)
    res = np.zeros((len(table), len(COUNT_FIELDS)))
    for j in range(len(table)):
        op_counts(ops, j, float(batch), float(q), float(past), res[j])
    out = table.drop(columns=["n", "k", "w_elems", "b_elems"]).copy()
    for c, name in enumerate(COUNT_FIELDS):
        out[name] = res[:, c]
    return out
