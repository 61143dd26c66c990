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
