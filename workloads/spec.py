"""Model description: a transformers-style ``config.json`` -> :class:`ModelSpec`.

Architectures are data: :data:`ARCHS` maps a ``model_type`` to the config keys it uses and the
Hugging Face module paths of its layers (the op names of docs/DESIGN.md). Adding an architecture is
adding a row here, not writing a new builder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mpqsim import InputError, choices_hint


@dataclass(frozen=True)
class ArchNames:
    """Module-path templates of one architecture; ``{i}`` is the layer, ``{e}`` the expert."""

    layer: str = "model.layers.{i}"
    attn: str = "self_attn"
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    qkv: str = ""                 # fused q/k/v projection (GPT-2 ``c_attn``), else empty
    o: str = "o_proj"
    gate: str = "mlp.gate_proj"   # empty for a plain (ungated) MLP
    up: str = "mlp.up_proj"
    down: str = "mlp.down_proj"
    act: str = "mlp.act_fn"
    norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    router: str = "block_sparse_moe.gate"
    expert_gate: str = "block_sparse_moe.experts.{e}.w1"
    expert_up: str = "block_sparse_moe.experts.{e}.w3"
    expert_down: str = "block_sparse_moe.experts.{e}.w2"
    embed: str = "model.embed_tokens"
    project_in: str = ""          # embedding -> hidden projection when their widths differ (OPT-350m)
    project_out: str = ""
    pos_embed: str = ""           # learned positions (OPT, GPT-2), else empty
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"


_LLAMA = ArchNames()
_GEMMA2 = ArchNames(norms=("input_layernorm", "post_attention_layernorm",
                           "pre_feedforward_layernorm", "post_feedforward_layernorm"))
_OPT = ArchNames(layer="model.decoder.layers.{i}", o="out_proj", gate="", up="fc1", down="fc2",
                 act="activation_fn", norms=("self_attn_layer_norm", "final_layer_norm"),
                 embed="model.decoder.embed_tokens", pos_embed="model.decoder.embed_positions",
                 project_in="model.decoder.project_in", project_out="model.decoder.project_out",
                 final_norm="model.decoder.final_layer_norm")
_GPT2 = ArchNames(layer="transformer.h.{i}", attn="attn", q="", k="", v="", qkv="c_attn", o="c_proj",
                  gate="", up="mlp.c_fc", down="mlp.c_proj", act="mlp.act", norms=("ln_1", "ln_2"),
                  embed="transformer.wte", pos_embed="transformer.wpe", final_norm="transformer.ln_f")

# Config-key aliases: canonical field -> keys tried in order.
_KEYS = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads", "multi_query_group_num"),
    "intermediate": ("intermediate_size", "ffn_dim", "n_inner"),
    "vocab": ("vocab_size",),
    "max_positions": ("max_position_embeddings", "n_positions", "n_ctx"),
    "act": ("hidden_act", "hidden_activation", "activation_function"),
}

#: model_type -> (names, flags). Flags: norm kind, gated MLP, biases, position kind, sliding-window rule.
ARCHS: dict[str, tuple[ArchNames, dict]] = {
    "llama": (_LLAMA, dict(norm="rms", gated=True, position="rope", window="none")),
    "mistral": (_LLAMA, dict(norm="rms", gated=True, position="rope", window="all")),
    "qwen2": (_LLAMA, dict(norm="rms", gated=True, position="rope", window="qwen2", qkv_bias=True)),
    "gemma": (_LLAMA, dict(norm="rms", gated=True, position="rope", window="none")),
    "gemma2": (_GEMMA2, dict(norm="rms", gated=True, position="rope", window="even")),
    "gemma3_text": (_GEMMA2, dict(norm="rms", gated=True, position="rope", window="layer_types", qk_norm=True)),
    "opt": (_OPT, dict(norm="layer", gated=False, position="learned", pos_offset=2, bias=True)),
    "gpt2": (_GPT2, dict(norm="layer", gated=False, position="learned", bias=True, intermediate_mult=4)),
    "mixtral": (_LLAMA, dict(norm="rms", gated=True, position="rope", window="all", moe=True)),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the op table needs to know about a decoder-only transformer.

    Sizes are element counts; ``window`` holds one sliding-window length per layer (0 = full
    attention); ``routed_experts`` = 0 for a dense MLP.
    """

    name: str
    arch: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_positions: int
    names: ArchNames
    norm: str = "rms"
    gated: bool = True
    activation: str = "silu"
    qkv_bias: bool = False
    bias: bool = False              # every linear and norm has a bias (OPT, GPT-2)
    tied_embeddings: bool = False
    position: str = "rope"
    pos_offset: int = 0             # OPT stores 2 extra learned positions
    embed_dim: int = 0              # token-embedding width when it differs from hidden (OPT-350m), else 0
    window: tuple[int, ...] = ()
    qk_norm: bool = False           # RMSNorm on each head's query and key (Gemma-3)
    routed_experts: int = 0
    experts_per_token: int = 0
    published_params: float | None = None
    source: str = ""
    config: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def _get(cfg: dict, canon: str, default=None):
    for k in _KEYS[canon]:
        if cfg.get(k) is not None:
            return cfg[k]
    return default


def _positive_int(cfg: dict, canon: str, where: str, default=None) -> int:
    v = _get(cfg, canon, default)
    if v is None:
        raise InputError(f"{where}: config has no {canon} field (tried {', '.join(_KEYS[canon])})")
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise InputError(f"{where}: {canon} must be a positive integer, got {v!r}")
    return v


def _int_field(cfg: dict, key: str, where: str, default: int = 0, lo: int = 0) -> int:
    """An optional integer field of the config (None/absent -> default), >= lo."""
    v = cfg.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise InputError(f"{where}: {key} must be an integer, got {v!r}")
    if int(v) < lo:
        raise InputError(f"{where}: {key} must be >= {lo}, got {v!r}")
    return int(v)


def _windows(rule: str, cfg: dict, layers: int, where: str) -> tuple[int, ...]:
    w = _int_field(cfg, "sliding_window", where)
    types = cfg.get("layer_types")
    if rule != "none" and isinstance(types, list) and len(types) == layers:  # explicit per-layer kinds
        return tuple(int(w) if t == "sliding_attention" else 0 for t in types)
    if rule == "qwen2" and cfg.get("use_sliding_window"):
        first = _int_field(cfg, "max_window_layers", where, default=layers)
        return tuple(w if i >= first else 0 for i in range(layers))
    if rule == "all":
        return (int(w),) * layers
    if rule == "even":  # Gemma-2: even layers local (sliding), odd layers global
        return tuple(int(w) if i % 2 == 0 else 0 for i in range(layers))
    return (0,) * layers


def spec_from_config(cfg: dict, name: str = "", where: str = "config") -> ModelSpec:
    """Build a :class:`ModelSpec` from a transformers-style config dict."""
    mtype = cfg.get("model_type")
    if mtype not in ARCHS:
        raise InputError(f"{where}: unsupported model_type {mtype!r}; {choices_hint(ARCHS)}")
    names, flags = ARCHS[mtype]
    hidden = _positive_int(cfg, "hidden", where)
    layers = _positive_int(cfg, "layers", where)
    heads = _positive_int(cfg, "heads", where)
    kv_heads = _positive_int(cfg, "kv_heads", where, default=heads)
    if heads % kv_heads:
        raise InputError(f"{where}: {heads} attention heads are not a multiple of {kv_heads} KV heads")
    head_dim = _int_field(cfg, "head_dim", where, lo=1) if cfg.get("head_dim") else hidden // heads
    if head_dim <= 0:
        raise InputError(f"{where}: hidden size {hidden} and {heads} heads give a head dimension of 0")
    inter = _get(cfg, "intermediate")
    if inter is None:
        inter = flags.get("intermediate_mult", 4) * hidden
    elif isinstance(inter, bool) or not isinstance(inter, int) or inter <= 0:
        raise InputError(f"{where}: intermediate size must be a positive integer, got {inter!r}")
    for key in ("rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "rope_theta"):
        v = cfg.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise InputError(f"{where}: {key} must be a number, got {v!r}")
    moe = flags.get("moe")
    experts = _int_field(cfg, "num_local_experts", where) if moe else 0
    per_token = _int_field(cfg, "num_experts_per_tok", where) if moe else 0
    if moe and not 1 <= per_token <= experts:
        raise InputError(f"{where}: a mixture of experts needs 1 <= num_experts_per_tok <= num_local_experts, "
                         f"got {per_token} of {experts}")
    act = _get(cfg, "act", "silu")
    if not isinstance(act, str):
        raise InputError(f"{where}: the activation must be a name, got {act!r}")
    meta = cfg.get("_mpqsim", {})
    if not isinstance(meta, dict):
        raise InputError(f"{where}: _mpqsim must be an object")
    return ModelSpec(
        name=str(name or meta.get("name") or cfg.get("_name_or_path") or mtype),
        arch=mtype,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=int(head_dim),
        intermediate=int(inter),
        vocab=_positive_int(cfg, "vocab", where),
        max_positions=_positive_int(cfg, "max_positions", where),
        names=names,
        norm=flags["norm"],
        gated=flags["gated"],
        activation=act,
        qkv_bias=flags.get("qkv_bias", False) or bool(cfg.get("attention_bias")),
        bias=flags.get("bias", False) and cfg.get("enable_bias", True),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        position=flags["position"],
        pos_offset=flags.get("pos_offset", 0),
        embed_dim=_embed_dim(cfg, hidden, where),
        window=_windows(flags.get("window", "none"), cfg, layers, where),
        qk_norm=flags.get("qk_norm", False),
        routed_experts=experts,
        experts_per_token=per_token,
        published_params=meta.get("published_params"),
        source=meta.get("source", ""),
        config=cfg,
    )


def _embed_dim(cfg: dict, hidden: int, where: str = "config") -> int:
    d = _int_field(cfg, "word_embed_proj_dim", where)
    return d if d and d != hidden else 0


def read_config(path: str | Path) -> dict:
    """Read a config.json (or a model directory holding one) with a clear error."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        with open(p) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise InputError(f"model config not found: {p}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"malformed JSON in {p}: {e}") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{p}: a model config must be a JSON object")
    return cfg
