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

from mpqsim import InputError, checks

ARRIVALS = ("poisson", "gamma")
MAX_REQUESTS = 10_000_000  # per run; memory is checked separately (sim.serve_runs.check_memory)
LENGTH_DISTS = ("fixed", "uniform", "lognormal")


@dataclass(frozen=True)
class Lengths:
    """Token-length distribution: ``fixed`` (= mean), ``uniform`` (mean +- spread), ``lognormal``
    (mean, coefficient of variation = spread). Drawn lengths are clipped to [1, max]."""

    mean: int
    dist: str = "fixed"
    spread: float = 0.0
    what: str = "length"

    def check(self, max_len: int) -> None:
        checks.choice(self.dist, "length distribution", LENGTH_DISTS)
        checks.integer(self.mean, f"{self.what} (tokens)", lo=1, hi=max_len)
        checks.number(self.spread, f"{self.what} spread", lo=0)
        if self.dist == "uniform" and self.mean - self.spread < 1:
            raise InputError(f"uniform {self.what}s {self.mean} +- {self.spread:g} reach below 1 token; "
                             f"give a spread below {self.mean}")
        if self.dist == "uniform" and self.mean + self.spread > max_len:
            raise InputError(f"uniform {self.what}s {self.mean} +- {self.spread:g} reach beyond {max_len} tokens")

    def draw(self, n: int, rng: np.random.Generator, max_len: int) -> tuple[np.ndarray, int]:
        """(lengths, how many were clipped): drawn tails beyond [1, max_len] are clipped to it."""
        self.check(max_len)
        if self.dist == "fixed":
            x = np.full(n, float(self.mean))
        elif self.dist == "uniform":
            x = rng.uniform(self.mean - self.spread, self.mean + self.spread, n)
        else:
            sigma = np.sqrt(np.log1p(self.spread**2))
            x = rng.lognormal(np.log(self.mean) - sigma**2 / 2, sigma, n)
        x = np.rint(x)
        clipped = int(((x < 1) | (x > max_len)).sum())
        return np.clip(x, 1, max_len).astype(int), clipped


def synthetic(n: int, qps: float, prompt: Lengths, output: Lengths, seed: int = 0, arrival: str = "poisson",
              cv: float = 1.0, max_len: int = 1 << 30) -> pd.DataFrame:
    """``n`` requests at mean rate ``qps``: Poisson, or gamma inter-arrivals with coefficient of
    variation ``cv`` (cv = 1 is Poisson; > 1 burstier)."""
    checks.number(qps, "request rate (requests/s)", lo=0, lo_open=True)
    checks.integer(n, "number of requests", lo=1, hi=MAX_REQUESTS)
    checks.integer(seed, "seed", lo=0)
    checks.choice(arrival, "arrival process", ARRIVALS)
    checks.number(cv, "coefficient of variation of arrivals", lo=0, lo_open=True, hi=100)
    rng = np.random.default_rng(seed)
    if arrival == "poisson":
        gaps = rng.exponential(1.0 / qps, n)
    else:
        shape = 1.0 / cv**2
        gaps = rng.gamma(shape, 1.0 / (qps * shape), n)
    (p_len, p_clip), (o_len, o_clip) = prompt.draw(n, rng, max_len), output.draw(n, rng, max_len)
    df = pd.DataFrame(dict(arrival=np.cumsum(gaps), prompt=p_len, output=o_len))
    df.attrs["clipped"] = p_clip + o_clip  # drawn lengths moved into [1, max_len]
    if not np.isfinite(df.arrival.iloc[-1]):
        raise InputError(f"request rate {qps} gives arrival times beyond floating-point range")
    return df


def read_trace(path: str | Path) -> pd.DataFrame:
    """A trace with columns arrival (s), prompt and output (tokens); CSV or JSON lines."""
    p = checks.input_file(path, "trace file")
    try:
        df = pd.read_json(p, lines=True) if p.suffix in (".jsonl", ".json") else pd.read_csv(p)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise InputError(f"cannot read trace {p}: {(str(e).splitlines() or [type(e).__name__])[0]}") from None
    missing = {"arrival", "prompt", "output"} - set(df.columns)
    if missing:
        raise InputError(f"trace {p} lacks column(s) {', '.join(sorted(missing))}; needs arrival, prompt, output")
    df = df[["arrival", "prompt", "output"]]
    if df.empty:
        raise InputError(f"trace {p} has no rows")
    try:
        num = df.astype(float)
    except (TypeError, ValueError):
        raise InputError(f"trace {p}: arrival, prompt and output must be numbers") from None
    bad = ~np.isfinite(num.to_numpy()).all(axis=1) | (num.arrival < 0).to_numpy() \
        | (num[["prompt", "output"]] < 1).any(axis=1).to_numpy() \
        | (num[["prompt", "output"]] != np.round(num[["prompt", "output"]])).any(axis=1).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"trace {p}: row {i + 1} {df.iloc[i].tolist()}: every row needs a finite arrival >= 0 "
                         "and whole prompt, output >= 1 tokens")
    if len(df) > MAX_REQUESTS:
        raise InputError(f"trace {p} has {len(df):,} requests; at most {MAX_REQUESTS:,} can be simulated")
    df = num
    return df.astype({"arrival": float, "prompt": int, "output": int}).sort_values("arrival", kind="stable") \
        .reset_index(drop=True)
