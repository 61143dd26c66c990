"""Seed 001's predictor of post-PTQ loss: a random forest (scikit-learn, 120 trees, depth 8) from cheap
features to the NLL after GPTQ.

Features per (model, weight format): parameter count of the weight tensors, the pre-trained NLL,
the SQNR of round-to-nearest, the NLL at RTN, the radial slope dNLL/dSQNR at the RTN point
(:func:`quant.landscape.rtn_point`), and the format's precision (element bits), exponent bits and
block size. :func:`features` measures them on a fake-quantized model; :func:`fit` trains on a
table of them with the measured ``gptq_nll``; :func:`held_out_error` trains on every model but one
and reports the error on that one. The forest learns the loss *increase* over the pre-trained NLL
(and adds it back): with few models, trees cannot interpolate a new model's base loss, but the
damage of a format transfers (seed 001 trains on dozens of models and predicts the NLL itself).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mpqsim import InputError
from quant.formats import parse_format

FEATURES = ("params", "nll", "sqnr_db", "rtn_nll", "radial_slope", "precision_bits", "exp_bits", "block")
TARGET = "gptq_nll"


def format_features(fmt: str) -> dict:
    f = parse_format(fmt)
    return dict(precision_bits=f.element_bits, exp_bits=f.ebits, block=f.block)


def features(fq, windows, fmt: str, batch_size: int = 8) -> dict:
    """The predictor's inputs for ``fmt`` on ``fq``'s model (a few forward passes)."""
    from quant.landscape import rtn_point

    return dict(rtn_point(fq, windows, fmt, batch_size=batch_size), **format_features(fmt))


def fit(df: pd.DataFrame, seed: int = 0):
    """A RandomForestRegressor(120 trees, depth 8) from :data:`FEATURES` to ``gptq_nll``."""
    from sklearn.ensemble import RandomForestRegressor

    missing = set(FEATURES + (TARGET,)) - set(df.columns)
    if missing:
        raise InputError(f"predictor table lacks column(s) {', '.join(sorted(missing))}")
    if len(df) < 2:
        raise InputError("the predictor needs at least two rows to fit")
    rf = RandomForestRegressor(n_estimators=120, max_depth=8, random_state=seed)
    rf.fit(df[list(FEATURES)].to_numpy(float), (df[TARGET] - df.nll).to_numpy(float))
    return rf


def predict(rf, df: pd.DataFrame) -> np.ndarray:
    """Predicted NLL after GPTQ: the pre-trained NLL plus the predicted increase."""
    return df.nll.to_numpy(float) + rf.predict(df[list(FEATURES)].to_numpy(float))


def held_out_error(df: pd.DataFrame, model: str) -> dict:
    """Train on every other model's rows, predict ``model``'s: MAE (nats) and the baselines
    (predicting the RTN NLL, i.e. "GPTQ does nothing")."""
    test = df[df.model == model]
    train = df[df.model != model]
    if test.empty or train.empty:
        raise InputError(f"held-out model {model!r} needs rows of it and of at least one other model")
    pred = predict(fit(train), test)
    err = np.abs(pred - test[TARGET].to_numpy())
    base = np.abs(test.rtn_nll.to_numpy() - test[TARGET].to_numpy())
    return dict(model=model, n_train=len(train), n_test=len(test), mae_nats=float(err.mean()),
                rtn_baseline_mae_nats=float(base.mean()),
                predictions=[dict(format=f, measured=float(m), predicted=float(p))
                             for f, m, p in zip(test.format, test[TARGET], pred)])


__all__ = ["FEATURES", "features", "fit", "predict", "held_out_error", "format_features"]
