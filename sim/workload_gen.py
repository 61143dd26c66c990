"""Request streams for the serving simulator: arrival processes and prompt/output lengths.

A stream is a plain DataFrame with columns ``arrival`` (s), ``prompt`` and ``output`` (tokens),
sorted by arrival: from a Poisson or gamma process with fixed or drawn lengths (seeded), or from
a trace file (CSV or JSON lines with those three columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mpqsim import InputError

ARRIVALS = ("poisson", "gamma")
LENGTH_DISTS = ("fixed", "uniform", "lognormal")


@dataclass(frozen=True)
class Lengths:
    """Token-length distribution: ``fixed`` (= mean), ``uniform`` (mean +- spread), ``lognormal``
    (mean, coefficient of variation = spread). Drawn lengths are clipped to [1, max]."""

    mean: int
    dist: str = "fixed"
    spread: float = 0.0

    def draw(self, n: int, rng: np.random.Generator, max_len: int) -> np.ndarray:
        if self.dist not in LENGTH_DISTS:
            raise InputError(f"unknown length distribution {self.dist!r}; valid: {', '.join(LENGTH_DISTS)}")
        if self.dist == "fixed":
            x = np.full(n, float(self.mean))
        elif self.dist == "uniform":
            x = rng.uniform(self.mean - self.spread, self.mean + self.spread, n)
        else:
            sigma = np.sqrt(np.log1p(self.spread**2))
            x = rng.lognormal(np.log(self.mean) - sigma**2 / 2, sigma, n)
        return np.clip(np.rint(x), 1, max_len).astype(int)


def synthetic(n: int, qps: float, prompt: Lengths, output: Lengths, seed: int = 0, arrival: str = "poisson",
              cv: float = 1.0, max_len: int = 1 << 30) -> pd.DataFrame:
    """``n`` requests at mean rate ``qps``: Poisson, or gamma inter-arrivals with coefficient of
    variation ``cv`` (cv = 1 is Poisson; > 1 burstier)."""
    if qps <= 0:
        raise InputError(f"request rate must be > 0 requests/s, got {qps}")
    if n <= 0:
        raise InputError(f"number of requests must be > 0, got {n}")
    if arrival not in ARRIVALS:
        raise InputError(f"unknown arrival process {arrival!r}; valid: {', '.join(ARRIVALS)}")
    if arrival == "gamma" and cv <= 0:
        raise InputError(f"gamma arrivals need a coefficient of variation > 0, got {cv}")
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / qps, n)
    else:
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (qps * shape), n)
    return pd.DataFrame(dict(arrival=np.cumsum(gaps), prompt=prompt.draw(n, rng, max_len),
                             output=output.draw(n, rng, max_len)))


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace with columns arrival (s), prompt and output (tokens); CSV or JSON lines."""
    p = Path(path)
    try:
        df = pd.read_json(p, lines=True) if p.suffix in (".jsonl", ".json") else pd.read_csv(p)
    except FileNotFoundError:
        raise InputError(f"trace file not found: {p}") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read trace {p}: {str(e).splitlines()[0]}") from None
    missing = {"arrival", "prompt", "output"} - set(df.columns)
    if missing:
        raise InputError(f"trace {p} lacks column(s) {', '.join(sorted(missing))}; needs arrival, prompt, output")
    df = df[["arrival", "prompt", "output"]]
    if df.empty or df.isna().any().any() or (df[["prompt", "output"]] < 1).any().any() or (df.arrival < 0).any():
        raise InputError(f"trace {p}: every row needs arrival >= 0 and prompt, output >= 1")
    return df.astype({"arrival": float, "prompt": int, "output": int}).sort_values("arrival", kind="stable") \
        .reset_index(drop=True)
