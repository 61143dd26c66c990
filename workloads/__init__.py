"""workloads: model description -> op table (prefill and decode, GQA, MoE). Knows no devices or formats."""

from workloads.models import bundled_models, load_model, models_table
from workloads.optable import build_optable, counts, op_names, total_params
from workloads.spec import ModelSpec, spec_from_config

__all__ = ["ModelSpec", "spec_from_config", "load_model", "bundled_models", "models_table",
           "build_optable", "counts", "op_names", "total_params"]
