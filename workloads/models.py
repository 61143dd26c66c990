"""Bundled model configs and loading a model by name or by path to a local config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mpqsim import InputError, bundled_files, choices_hint
from workloads.spec import ModelSpec, read_config, spec_from_config

_CONFIG_DIR = "configs"


def _bundled() -> dict:
    return bundled_files("workloads", _CONFIG_DIR, ".json")


def bundled_models() -> list[str]:
    return sorted(_bundled())


def load_model(name_or_path: str) -> ModelSpec:
    """A bundled model by name (``llama-2-7b``), or any local ``config.json`` / model directory."""
    key = str(name_or_path).strip()
    if key.lower() in _bundled():
        text = _bundled()[key.lower()].read_text()
        return spec_from_config(json.loads(text), key.lower(), where=f"bundled config {key.lower()}")
    p = Path(key)
    if p.suffix == ".json" or p.exists():
        # name: the model directory for .../NAME/config.json or NAME/, else the file stem
        name = p.resolve().parent.name if p.name == "config.json" else p.name if p.is_dir() else p.stem
        return spec_from_config(read_config(p), name, where=str(p))
    raise InputError(f"unknown model {key!r}: not a bundled model nor a path to a config.json; "
                     f"{choices_hint(_bundled())}")


def models_table() -> pd.DataFrame:
    """One row per bundled model: architecture, sizes, parameter count and its published value."""
    from workloads.optable import build_optable, total_params

    rows = []
    for name in bundled_models():
        s = load_model(name)
        rows.append(dict(model=name, arch=s.arch, layers=s.layers, hidden=s.hidden, heads=s.heads,
                         kv_heads=s.kv_heads, intermediate=s.intermediate, vocab=s.vocab,
                         experts=f"{s.routed_experts}x top-{s.experts_per_token}" if s.routed_experts else "",
                         max_context=s.max_positions,
                         params_b=total_params(build_optable(s)) / 1e9,
                         published_b=(s.published_params or float("nan")) / 1e9))
    return pd.DataFrame(rows)
