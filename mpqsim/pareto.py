"""The Pareto front of a table: rows no other row beats in two minimised columns."""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto(df: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True for rows that no other row beats in both ``x`` and ``y`` (both minimised; of exact
    duplicates the first in sorted order is kept)."""
    order = np.lexsort((df[y].to_numpy(), df[x].to_numpy()))
    keep = np.zeros(len(df), bool)
    best = np.inf
    yv = df[y].to_numpy()
    for i in order:
        if yv[i] < best:
            keep[i] = True
            best = yv[i]
    return pd.Series(keep, index=df.index)


__all__ = ["pareto"]
