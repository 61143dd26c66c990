"""What a report reads: the result tables mpqsim's commands write, recognised by their columns.

:func:`read_inputs` takes files (``.csv``, ``.parquet``, ``fits.json``) or folders (their known
files: a sweep's ``results.parquet``, a sizing folder's ``points.parquet`` / ``best.csv`` /
``front.csv``, a search folder's ``results.csv`` / ``front.csv``, a serving folder's
``summary.csv``, a fit folder's ``fits.json`` / ``law1_points.csv``) and returns the tables by kind
(:data:`KINDS`). A table of no known kind is an error naming the columns it would need.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mpqsim import InputError

#: kind -> (columns that identify it, what writes it); tested in order (the first match wins)
KINDS = {
    "sizing_best": ({"near_best_splits", "request_ms"}, "mpqsim size -o DIR (best.csv)"),
    "sizing": ({"design", "request_ms", "area_mm2"}, "mpqsim size -o DIR (points.parquet, front.csv)"),
    "per_op": ({"phase", "op", "intensity", "time_us", "device"}, "mpqsim latency --per-op --csv FILE"),
    "serving": ({"qps", "ttft_p99_s", "tpot_p99_s"}, "mpqsim serve --csv FILE (or -o DIR: summary.csv)"),
    "serving_max": ({"max_qps", "device", "precision"}, "the highest rate each setup serves within an SLO (mpqsim demo)"),
    "sweep": ({"chunk", "device_arg", "decode_ms"}, "mpqsim sweep SPEC -o DIR (results.parquet)"),
    "latency": ({"device", "precision", "batch", "decode_ms", "prefill_ms", "fits"}, "mpqsim latency --csv FILE"),
    "search_front": ({"signature", "delta", "cost"}, "mpqsim quant search --device D -o DIR (front.csv)"),
    "search": ({"qr", "delta", "ppl"}, "mpqsim quant search -o DIR (results.csv)"),
    "law_points": ({"size_b", "qr_max", "budget"}, "mpqsim quant fit -o DIR (law1_points.csv)"),
}
FOLDER_FILES = ("results.parquet", "serving.parquet", "points.parquet", "best.csv", "front.csv", "results.csv", "summary.csv",
                "latency.csv", "per_op.csv", "serving.csv", "fits.json", "law1_points.csv")


@dataclass
class Inputs:
    """Tables by kind (each a list of (DataFrame, source path)) and Law 1 fits (from fits.json)."""

    tables: dict
    fits: list

    def get(self, kind: str) -> pd.DataFrame | None:
        frames = [df for df, _ in self.tables.get(kind, [])]
        return pd.concat(frames, ignore_index=True) if frames else None

    @property
    def sources(self) -> list[tuple[str, str]]:
        out = [(kind, src) for kind, items in self.tables.items() for _, src in items] + \
            [("fits", f["source"]) for f in self.fits]
        return list(dict.fromkeys(out))  # a fits.json holds several fits: named once


def kind_of(df: pd.DataFrame) -> str | None:
    cols = set(df.columns)
    for kind, (need, _) in KINDS.items():
        if need <= cols:
            return kind
    return None


def _read_table(p: Path) -> pd.DataFrame:
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise InputError(f"cannot read {p}: {' '.join(str(e).split())[:200]}") from None


def _read_fits(p: Path) -> list:
    try:
        doc = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {p}: {e}") from None
    if not isinstance(doc, dict) or "law1" not in doc:
        raise InputError(f"{p} is not a 'quant fit' fits.json (no law1 list)")
    return [dict(f, source=str(p)) for f in doc["law1"]]


def read_inputs(paths) -> Inputs:
    """The tables under ``paths`` (files or folders), by kind."""
    if not paths:
        raise InputError("give at least one result table or folder")
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = [p / f for f in FOLDER_FILES if (p / f).is_file()]
            if (p / "points.parquet").is_file():  # a sizing folder: its front is a subset of the points
                found = [f for f in found if f.name != "front.csv"]
            if not found:
                raise InputError(f"{p} holds none of the result files a report reads ({', '.join(FOLDER_FILES)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"result file or folder not found: {p}")
    tables: dict = {}
    fits: list = []
    for f in files:
        if f.suffix == ".json":
            fits += _read_fits(f)
            continue
        if f.suffix not in (".csv", ".parquet"):
            raise InputError(f"{f}: a report reads .csv, .parquet and fits.json files")
        df = _read_table(f)
        kind = kind_of(df)
        if kind is None:
            known = "; ".join(f"{k}: {', '.join(sorted(c))} ({w})" for k, (c, w) in KINDS.items())
            raise InputError(f"{f}: not a table mpqsim writes (columns {', '.join(map(str, df.columns[:8]))}...); "
                             f"a report reads {known}")
        tables.setdefault(kind, []).append((df, str(f)))
    return Inputs(tables, fits)


__all__ = ["Inputs", "KINDS", "read_inputs", "kind_of"]
