"""Inference engines as data (``sim/engines.yaml``): kernels and memory traffic per element-wise op class."""

from __future__ import annotations

from importlib import resources

import yaml

from mpqsim import InputError, choices_hint
from workloads.optable import EW_NAMES

_DOC = yaml.safe_load((resources.files("sim") / "engines.yaml").read_text())["engines"]
ENGINES: tuple[str, ...] = tuple(_DOC)
DEFAULT_ENGINE = "fused"


def check_engine(name: str) -> str:
    if name not in _DOC:
        raise InputError(f"unknown engine {name!r}; {choices_hint(_DOC)}")
    return name


def ew_plan(engine: str, ew: int) -> tuple[str, float, float]:
    """(kernel family, kernels per op instance, traffic multiple) of an element-wise op of class code ``ew``."""
    e = _DOC[check_engine(engine)]
    c = e.get(EW_NAMES[int(ew)], e["other"])
    return str(c["kernel"]), float(c["kernels"]), float(c["traffic"])


def describe(engine: str) -> str:
    return _DOC[check_engine(engine)]["doc"]


def all_reduce_kind(engine: str) -> str:
    """``oneshot`` (custom all-reduce inside an NVLink domain, as vLLM / TensorRT-LLM) or ``nccl``."""
    return str(_DOC[check_engine(engine)]["all_reduce"]["kind"])


def attention_glue(engine: str) -> float:
    """Kernels per layer around the attention kernel (KV-cache writes, layout copies)."""
    return float(_DOC[check_engine(engine)]["attention_glue"]["kernels"])


def merged_gemms(engine: str) -> tuple[tuple[str, ...], ...]:
    """Groups of projections (:class:`workloads.spec.ArchNames` fields) the engine runs as one GEMM."""
    return tuple(tuple(g) for g in _DOC[check_engine(engine)]["merged_gemms"]["groups"])


def merge_followers(rows, names, engine: str) -> list[int]:
    """Indices of the rows the engine folds into an earlier row's GEMM (no launch or fixed cost of
    their own): rows named by one of :func:`merged_gemms`'s groups (``names``: the model's
    :class:`workloads.spec.ArchNames`) that share the group's first row's layers, experts and
    formats (a mixed-precision map can split them; then they run apart). The 16-bit parts of proxy
    quantization (``<op>.proxy16``) merge the same way among themselves."""
    if names is None:
        return []
    follow = []
    for group in merged_gemms(engine):
        parts = []
        for field in group:
            part = getattr(names, field, "")
            if not part:
                break
            parts.append(f"{names.layer}.{names.attn}.{part}" if field in ("q", "k", "v") else f"{names.layer}.{part}")
        else:
            leaders: dict[tuple, int] = {}
            for j, r in enumerate(rows):
                base, dot, suffix = r["name"].partition(".proxy16")  # proxy quantization's 16-bit part
                if base not in parts or (dot and suffix):
                    continue
                key = (dot, tuple(r["layers"]), tuple(r["expert_ids"]), r["weight_fmt"], r["act_fmt"], r["k"])
                if base == parts[0]:
                    leaders[key] = j
                elif key in leaders:
                    follow.append(j)
    return sorted(follow)
