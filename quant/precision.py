"""Precision maps: which matmul runs in which number format, plus the KV-cache format.

A map resolves the formats of an op from, in order: an explicit entry for its name (maps found by
search), a rule for its role (``linear``, ``expert``, ``router``, ``attention``, ``lm_head``, and
``embed`` for the embedding tables, weight-only; used by the uniform presets), then ``default``. For the attention matmuls both operands are
activations: ``qk`` has weight = K and act = Q, ``av`` has weight = V and act = the probabilities.
Element-wise ops run in the high-precision ``default`` activation format.

JSON form (op names are the Hugging Face module paths of docs/DESIGN.md)::

    {"name": "my-map", "kv_cache": "bf16",
     "default": {"weight": "bf16", "act": "bf16"},
     "roles": {"linear": {"weight": "mxint4_32", "act": "bf16"}},
     "ops": {"model.layers.0.self_attn.q_proj": {"weight": "bf16", "act": "bf16"}}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mpqsim import InputError, choices_hint
from quant.formats import Format, parse_format
from workloads.optable import MATMUL_ROLES

#: Roles a map may set: the matmuls, and ``embed`` (the embedding tables: weight-only, looked up in
#: their stored format; a tied table's lookup follows its own entry, its Q_r share the lm_head's).
MAP_ROLES = (*MATMUL_ROLES, "embed")


@dataclass(frozen=True)
class OpFormats:
    """Formats of one matmul's two operands."""

    weight: Format
    act: Format

    @classmethod
    def of(cls, weight: str | Format, act: str | Format) -> "OpFormats":
        return cls(parse_format(weight), parse_format(act))

    def to_json(self) -> dict:
        return {"weight": self.weight.name, "act": self.act.name}


#: Uniform presets: role -> (weight, act) and the KV-cache format. lm_head, router and embeddings
#: stay in bf16 in every preset (common deployment practice); ``doc`` says what each one models.
PRESETS: dict[str, dict] = {
    "bf16": dict(doc="everything bf16", linear=("bf16", "bf16"), attention=("bf16", "bf16"), kv="bf16"),
    "fp16": dict(doc="everything fp16", linear=("fp16", "fp16"), attention=("fp16", "fp16"), kv="fp16",
                 default=("fp16", "fp16")),
    "fp32": dict(doc="everything fp32", linear=("fp32", "fp32"), attention=("fp32", "fp32"), kv="fp32",
                 default=("fp32", "fp32")),
    "fp8": dict(doc="FP8 e4m3 weights and activations, per-tensor scales (vLLM fp8); bf16 attention and KV",
                linear=("fp8_e4m3", "fp8_e4m3"), attention=("bf16", "bf16"), kv="bf16"),
    "fp8-block": dict(doc="FP8 e4m3 weights and activations with one scale per 128 elements along k "
                           "(DeepSeek-V3 / vLLM block fp8); bf16 attention and KV",
                      linear=("fp8_e4m3_g128", "fp8_e4m3_g128"), attention=("bf16", "bf16"), kv="bf16"),
    "fp8-kv8": dict(doc="fp8 plus an fp8 e4m3 KV cache and fp8 attention",
                    linear=("fp8_e4m3", "fp8_e4m3"), attention=("fp8_e4m3", "fp8_e4m3"), kv="fp8_e4m3"),
    "w8a8": dict(doc="INT8 per-channel weights, per-tensor INT8 activations (SmoothQuant-style)",
                 linear=("int8_chan", "int8_tens"), attention=("bf16", "bf16"), kv="bf16"),
    "w8a16": dict(doc="INT8 per-channel weights, bf16 activations (weight-only)",
                  linear=("int8_chan", "bf16"), attention=("bf16", "bf16"), kv="bf16"),
    "w4a16": dict(doc="INT4 group-128 weights, bf16 activations (GPTQ/AWQ-style weight-only)",
                  linear=("int4_g128", "bf16"), attention=("bf16", "bf16"), kv="bf16"),
    "w4a16-mx": dict(doc="MXINT4 block-32 weights, bf16 activations (weight-only MX)",
                     linear=("mxint4_32", "bf16"), attention=("bf16", "bf16"), kv="bf16"),
    "w4a8": dict(doc="INT4 per-channel weights, per-tensor INT8 activations (runs on INT8 units)",
                 linear=("int4_chan", "int8_tens"), attention=("bf16", "bf16"), kv="bf16"),
    "fp4": dict(doc="FP4 e2m1 weights and activations, per-tensor scales",
                linear=("fp4_e2m1", "fp4_e2m1"), attention=("bf16", "bf16"), kv="bf16"),
    "nvfp4": dict(doc="NVFP4 (e2m1, block 16, e4m3 + fp32 scales) weights and activations on the linear layers; "
                       "bf16 attention and KV (TensorRT-LLM's NVFP4 checkpoints)",
                  linear=("nvfp4", "nvfp4"), attention=("bf16", "bf16"), kv="bf16"),
    "mxint8": dict(doc="MXINT8 block-32 on every matmul incl. qk/av, MXINT8 KV cache",
                   linear=("mxint8_32", "mxint8_32"), attention=("mxint8_32", "mxint8_32"), kv="mxint8_32"),
    "mxint4": dict(doc="MXINT4 block-32 on every matmul incl. qk/av (seed 000), MXINT4 KV cache",
                   linear=("mxint4_32", "mxint4_32"), attention=("mxint4_32", "mxint4_32"), kv="mxint4_32"),
    "mxfp8": dict(doc="MXFP8 e4m3 block-32 on every matmul incl. qk/av, MXFP8 KV cache",
                  linear=("mxfp8_e4m3_32", "mxfp8_e4m3_32"), attention=("mxfp8_e4m3_32", "mxfp8_e4m3_32"),
                  kv="mxfp8_e4m3_32"),
    "mxfp4": dict(doc="MXFP4 e2m1 block-32 on every matmul incl. qk/av, MXFP4 KV cache",
                  linear=("mxfp4_e2m1_32", "mxfp4_e2m1_32"), attention=("mxfp4_e2m1_32", "mxfp4_e2m1_32"),
                  kv="mxfp4_e2m1_32"),
}


@dataclass
class PrecisionMap:
    """Op name -> formats, role rules, a high-precision default and the KV-cache format."""

    name: str
    default: OpFormats = field(default_factory=lambda: OpFormats.of("bf16", "bf16"))
    kv_cache: Format = field(default_factory=lambda: parse_format("bf16"))
    roles: dict[str, OpFormats] = field(default_factory=dict)
    ops: dict[str, OpFormats] = field(default_factory=dict)
    #: seed 004's proxy quantization: this fraction of every low-precision weight's input columns
    #: (those fed by the producer's highest-std output rows, :mod:`quant.proxy`) stays in the high
    #: format; the cost model prices them as a 16-bit GEMM over those columns beside the low one
    #: (:func:`assign_format_rows`), the evaluation keeps them (``quant eval``)
    proxy: float = 0.0

    def formats_for(self, name: str, role: str) -> OpFormats:
        if name in self.ops:
            return self.ops[name]
        return self.roles.get(role, self.default)

    @property
    def high(self) -> Format:
        """The format of element-wise ops and of matmul outputs."""
        return self.default.act

    # ------------------------------------------------------------ JSON
    def to_json(self) -> dict:
        doc = {"name": self.name, "kv_cache": self.kv_cache.name, "default": self.default.to_json(),
               "roles": {r: f.to_json() for r, f in self.roles.items()},
               "ops": {n: f.to_json() for n, f in self.ops.items()}}
        return doc | ({"proxy": self.proxy} if self.proxy else {})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def from_json(cls, doc, where: str = "precision map") -> "PrecisionMap":
        if not isinstance(doc, dict):
            raise InputError(f"{where}: a precision map must be a JSON object")
        unknown = set(doc) - {"name", "kv_cache", "default", "roles", "ops", "proxy", "q_r", "meta"}
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                             "valid: name, kv_cache, default, roles, ops, proxy")
        proxy = doc.get("proxy", 0.0)
        if isinstance(proxy, bool) or not isinstance(proxy, (int, float)) or not 0.0 <= proxy < 1.0:
            raise InputError(f"{where}: 'proxy' must be a fraction in [0, 1) of each low-precision weight's input "
                             f"columns kept in 16 bits (e.g. 0.02), got {proxy!r}")

        def fmts(entry, what):
            if not isinstance(entry, dict) or set(entry) - {"weight", "act"}:
                raise InputError(f"{where}: {what} must be {{\"weight\": FORMAT, \"act\": FORMAT}}, got {entry!r}")
            try:
                return OpFormats.of(entry.get("weight", "bf16"), entry.get("act", "bf16"))
            except InputError as e:
                raise InputError(f"{where}: {what}: {e}") from None

        roles = doc.get("roles", {}) or {}
        if not isinstance(roles, dict):
            raise InputError(f"{where}: 'roles' must map role names to formats, e.g. "
                             f"{{\"linear\": {{\"weight\": \"mxint4_32\", \"act\": \"bf16\"}}}}; "
                             f"got a {type(roles).__name__}")
        bad = set(roles) - set(MAP_ROLES)
        if bad:
            raise InputError(f"{where}: unknown role(s) {', '.join(sorted(bad))}; {choices_hint(MAP_ROLES)}")
        ops = doc.get("ops", {}) or {}
        if not isinstance(ops, dict):
            raise InputError(f"{where}: 'ops' must map op names to formats")
        try:
            kv = parse_format(doc.get("kv_cache", "bf16"))
        except InputError as e:
            raise InputError(f"{where}: kv_cache: {e}") from None
        if not all(isinstance(n, str) for n in ops):
            raise InputError(f"{where}: op names in 'ops' must be strings")
        if "name" in doc and not isinstance(doc["name"], str):
            raise InputError(f"{where}: 'name' must be a string, got {doc['name']!r}")
        return cls(name=str(doc.get("name", Path(where).stem)),
                   default=fmts(doc.get("default", {"weight": "bf16", "act": "bf16"}), "default"),
                   kv_cache=kv,
                   roles={r: fmts(f, f"roles.{r}") for r, f in roles.items()},
                   ops={n: fmts(f, f"ops[{n!r}]") for n, f in ops.items()}, proxy=float(proxy))

    @classmethod
    def load(cls, path: str | Path) -> "PrecisionMap":
        from mpqsim import checks

        p = checks.input_file(path, "precision map")
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            raise InputError(f"precision map not found: {p}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"malformed JSON in precision map {p}: {e}") from None
        return cls.from_json(doc, str(p))

    def validate(self, valid_names) -> None:
        """Raise :class:`InputError` if the map names ops the model does not have."""
        valid = set(valid_names)
        unknown = [n for n in self.ops if n not in valid]
        if unknown:
            example = ", ".join(sorted(valid)[:3])
            raise InputError(f"precision map {self.name!r} names {len(unknown)} op(s) the model lacks, "
                             f"e.g. {unknown[0]!r}; valid op names look like: {example}")


def presets_table() -> pd.DataFrame:
    """One row per uniform preset: weight/activation formats of linear ops, attention, KV cache, what it models."""
    return pd.DataFrame([dict(preset=k, weight=v["linear"][0], act=v["linear"][1],
                              attention="/".join(v["attention"]), kv_cache=v["kv"], what=v["doc"])
                         for k, v in PRESETS.items()])


def preset_map(name: str) -> PrecisionMap:
    """A uniform :class:`PrecisionMap` from a preset name (see :data:`PRESETS`)."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise InputError(f"unknown precision {name!r}; {choices_hint(PRESETS)} (or --map FILE.json)")
    p = PRESETS[key]
    default = OpFormats.of(*p.get("default", ("bf16", "bf16")))
    lin = OpFormats.of(*p["linear"])
    return PrecisionMap(name=key, default=default, kv_cache=parse_format(p["kv"]),
                        roles={"linear": lin, "expert": lin, "attention": OpFormats.of(*p["attention"])})


# ---------------------------------------------------------------- applying a map to an op table
def assign_formats(table: pd.DataFrame, pmap: PrecisionMap) -> pd.DataFrame:
    """Add ``weight_fmt`` / ``act_fmt`` / ``out_fmt`` / ``kv_fmt`` columns to an op table.

    Rows are split where the map gives different layers (or experts) of one row different formats,
    so every output row has one format pair; ``layers``, ``expert_ids``, ``repeat`` and ``row_experts``
    describe the split rows. Element-wise and embedding ops get the map's high-precision format.
    """
    df = pd.DataFrame(assign_format_rows(table.to_dict("records"), pmap))
    df.attrs.update(table.attrs)
    df.attrs["precision"] = pmap.name
    return df


def assign_format_rows(rows, pmap: PrecisionMap) -> list[dict]:
    """:func:`assign_formats` on op-table rows (dicts): the rows with their formats, split as needed."""
    high = pmap.high

    def formats(name, role):  # an embedding is weight-only: its output is in the high format
        f = pmap.formats_for(name, role)
        return OpFormats(f.weight, high) if role == "embed" else f

    out_rows = []
    for row in rows:
        role = row["role"]
        if role not in MAP_ROLES:
            out_rows.append(dict(row, weight_fmt=high.name, act_fmt=high.name))
            continue
        if not pmap.ops:  # uniform map: no split needed
            f = formats(row["name"], role)
            out_rows.append(dict(row, weight_fmt=f.weight.name, act_fmt=f.act.name))
            continue
        layers = row["layers"] or (None,)
        experts = row["expert_ids"] or (None,)
        # per layer: the tuple of formats of its experts -> group identical layers
        by_layer: dict[tuple, list] = {}
        for i in layers:
            sig = tuple(formats(row["name"].format(i=i, e=e), role) for e in experts)
            by_layer.setdefault(sig, []).append(i)
        for sig, lay in by_layer.items():
            by_fmt: dict[OpFormats, list] = {}
            for e, f in zip(experts, sig):
                by_fmt.setdefault(f, []).append(e)
            for f, exps in by_fmt.items():
                sub = dict(row, weight_fmt=f.weight.name, act_fmt=f.act.name)
                sub["layers"] = tuple(lay) if lay != [None] else ()
                sub["expert_ids"] = tuple(exps) if exps != [None] else ()
                sub["repeat"] = max(1, len(sub["layers"]))
                sub["row_experts"] = len(sub["expert_ids"])
                out_rows.append(sub)
    if pmap.proxy > 0.0:
        out_rows = [part for r in out_rows for part in _proxy_split(r, pmap.proxy, high)]
    for r in out_rows:
        r["out_fmt"] = high.name
        r["kv_fmt"] = pmap.kv_cache.name
    return out_rows


#: roles whose low-precision weights proxy quantization keeps columns of (quant.proxy's consumers)
PROXY_ROLES = ("linear", "expert", "lm_head")


def _proxy_split(row: dict, fraction: float, high: Format) -> list[dict]:
    """A low-precision weight under proxy quantization: the row over the quantized input columns,
    and ``<name>.proxy16`` over the kept ones (a dense GEMM in the high format, weight and
    activation: LLM.int8()-style decomposition, two kernels whose outputs are summed). The kept
    columns are ``round(fraction x k)`` of the row's ``k``, as :func:`quant.proxy.kept_columns`
    takes them; the bias stays with the first part."""
    kept = int(round(fraction * row["k"]))
    if row["role"] not in PROXY_ROLES or parse_format(row["weight_fmt"]).is_high_precision or not kept:
        return [row]
    k = row["k"]
    bias = row["b_elems"]

    def part(cols: int, with_bias: bool) -> dict:
        w = (row["params"] - bias) * cols // k
        return dict(row, k=cols, w_elems=row["w_elems"] * cols // k, params=w + (bias if with_bias else 0),
                    b_elems=bias if with_bias else 0)

    return [part(k - kept, True),
            dict(part(kept, False), name=f"{row['name']}.proxy16", weight_fmt=high.name, act_fmt=high.name)]


def quant_ratio(assigned: pd.DataFrame) -> float:
    """Q_r as seed 000 defines it: low-precision parameters / all parameters of the model.

    The denominator is every parameter (embeddings, norms, lm_head, experts: the model's size). A
    parameter is low precision when the op that uses it runs with a low-precision weight format
    (not bf16/fp16/fp32): a matmul, or an embedding table (role ``embed``, weight-only). A tied
    embedding / lm_head table counts once, as low when its lm_head is (the lm_head needs the table
    in its format; a low lookup of a high table stores nothing less). Norms stay high. Attention
    matmuls (``qk``, ``av``) hold no parameters: they appear in :func:`flop_ratio` only.
    """
    inst = (assigned["repeat"] * np.maximum(assigned["row_experts"], 1)).to_numpy()
    params = assigned["params"].to_numpy() * inst
    total = params.sum()
    role = assigned["role"].to_numpy()
    tied_head = (role == "lm_head") & (assigned["params"] == 0).to_numpy()
    low = np.array([r in MAP_ROLES and not parse_format(f).is_high_precision
                    for r, f in zip(role, assigned["weight_fmt"])])
    if tied_head.any():  # the shared table is the first embedding (the token table)
        low &= ~((role == "embed") & (np.cumsum(role == "embed") == 1))
    low_params = params[low].sum() + (assigned["w_elems"].to_numpy() * inst)[low & tied_head].sum()
    return float(low_params / total) if total else 0.0


def flop_ratio(assigned: pd.DataFrame, flops: np.ndarray) -> float:
    """FLOP-weighted low-precision ratio: matmul FLOPs whose operands are not both high precision.

    ``flops`` is the per-row total FLOPs for a reference phase (the attention matmuls hold no
    parameters, so this ratio sees them where Q_r does not).
    """
    mask = assigned["role"].isin(MATMUL_ROLES).to_numpy()
    low = np.array([not (parse_format(w).is_high_precision and parse_format(a).is_high_precision)
                    for w, a in zip(assigned["weight_fmt"], assigned["act_fmt"])])
    total = flops[mask].sum()
    return float(flops[mask & low].sum() / total) if total else 0.0


def map_summary(table: pd.DataFrame, pmap: PrecisionMap, tokens: int = 1) -> dict:
    """How much of a model ``pmap`` puts in low precision: ``q_r`` (parameters, :func:`quant_ratio`)
    and ``flop_ratio`` (matmul FLOPs of a prefill of ``tokens`` tokens, :func:`flop_ratio`)."""
    from workloads.optable import counts

    t = assign_formats(table, pmap)
    c = counts(t, 1, tokens, 0)
    return dict(q_r=quant_ratio(t), flop_ratio=flop_ratio(t, (c.flops * c.repeat).to_numpy()))
