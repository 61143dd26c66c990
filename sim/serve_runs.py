"""Many serving simulations (precisions x request rates, or max-QPS searches) that lose nothing.

:class:`RunJournal` records every finished simulation as one JSON line under an output folder
(its first line holds the settings that identify the study); a re-run with the same settings
replays what is journalled and simulates only the rest, so a study interrupted by Ctrl-C or
``kill -9`` resumes where it stopped and ends with the same table as an uninterrupted run.
Per-request rows of each finished run are written to their own CSV (atomically, before the run
is journalled) instead of being held for the whole study.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from mpqsim import InputError
from mpqsim.journal import Journal
from sim.serving import SLO, ServingConfig, max_qps, simulate, sustains

#: Peak memory of a simulation per request and per output token (Request objects, per-iteration
#: samples, per-request rows, TBT gaps and their percentiles), from tracemalloc peaks of 20,000
#: requests with 32 / 128 / 512 output tokens (1,568 / 4,888 / 13,167 bytes per request; this
#: fit is within 30 %); used to refuse or warn before a run that would not fit.
BYTES_PER_REQUEST = 1000
BYTES_PER_OUTPUT_TOKEN = 26


def memory_needed(n_requests: int, mean_output: float) -> float:
    return n_requests * (BYTES_PER_REQUEST + BYTES_PER_OUTPUT_TOKEN * mean_output)


def available_memory() -> float:
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return float("inf")


def check_memory(n_requests: int, mean_output: float, warn) -> None:
    """Refuse a run that cannot fit in this machine's free memory; warn past half of it."""
    need, free = memory_needed(n_requests, mean_output), available_memory()
    if need > free:
        raise InputError(f"{n_requests:,} requests need about {need / 1e9:.1f} GB to simulate but {free / 1e9:.1f} GB "
                         "is free; simulate fewer requests")
    if need > free / 2 and warn:
        warn(f"warning: {n_requests:,} requests need about {need / 1e9:.1f} GB of the {free / 1e9:.1f} GB free")


def _tag(precision: str, qps) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{precision}@{qps}")


class RunJournal:
    """The journal of one study in ``folder`` (created; :class:`mpqsim.journal.Journal` keyed by
    run), or an in-memory one when ``folder`` is None. Per-request rows of a run are written to
    ``folder/requests/`` (or held, without a folder) when ``keep_requests``."""

    def __init__(self, folder, settings: dict, keep_requests: bool = True):
        self.folder = Path(folder) if folder else None
        self.keep_requests = keep_requests
        self._journal = Journal(self.folder / "journal.jsonl", settings, key="key", what="study") if self.folder \
            else None
        self.records: dict[str, dict] = self._journal.records if self._journal else {}

    def get(self, key: str):
        return self.records.get(key)

    def add(self, key: str, row: dict, per_request: pd.DataFrame | None = None) -> None:
        rec = dict(key=key, row=row)
        if not self.keep_requests:
            per_request = None
        if self._journal is None:
            if per_request is not None:
                rec["requests_df"] = per_request
            self.records[key] = rec
            return
        if per_request is not None:
            # the key's hash keeps two maps of one name (a preset and a file) apart
            tag = f"{_tag(row['precision'], row['qps'])}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
            out = self.folder / "requests" / f"{tag}.csv"
            out.parent.mkdir(exist_ok=True)
            tmp = out.with_suffix(".csv.tmp")
            per_request.to_csv(tmp, index=False)
            os.replace(tmp, out)  # before the journal line: a journalled run always has its rows
            rec["requests_csv"] = str(out.relative_to(self.folder))
        self._journal.add(rec, default=_json_default)


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.bool_):
        return bool(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def kernel_constants_id() -> str:
    """A hash of the kernel constants, calibrations and engines the cost model prices with: a study
    priced under other constants (a refit) must not be resumed into."""
    from importlib import resources

    h = hashlib.sha256()
    for pkg, rel in (("hwmodels", "kernels.yaml"), ("sim", "engines.yaml"), ("hwmodels", "power.yaml"),
                     ("hwmodels", "links.yaml"), ("hwmodels", "generator.yaml")):
        h.update((resources.files(pkg) / rel).read_bytes())
    cal = resources.files("hwmodels") / "calibration"
    for p in sorted(cal.iterdir(), key=lambda p: p.name):
        if p.name.endswith(".json"):
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def study_settings(spec, device, cfg: ServingConfig, slo: SLO, stream: dict) -> dict:
    """What identifies a study: model (name and config), device (every number), the kernel
    constants (:func:`kernel_constants_id`), serving settings, SLO and the request stream's settings."""
    dev = json.dumps({k: v for k, v in asdict(device).items() if k not in ("sources", "path")}, sort_keys=True,
                     default=str)
    cfg_json = json.dumps(spec.config, sort_keys=True, default=str)
    return dict(model=spec.name, model_config=hashlib.sha256(cfg_json.encode()).hexdigest()[:16],
                device=device.name, device_numbers=hashlib.sha256(dev.encode()).hexdigest()[:16],
                kernel_constants=kernel_constants_id(),
                serving=json.loads(json.dumps(asdict(cfg))), slo=asdict(slo), stream=stream)  # as a journal reads it


def _map_id(pmap) -> str:
    return hashlib.sha256(json.dumps(pmap.to_json(), sort_keys=True).encode()).hexdigest()[:12]


def run_rates(spec, device, maps, rates, make_requests, cfg: ServingConfig, slo: SLO, journal: RunJournal,
              progress=None, per_request_progress=None) -> pd.DataFrame:
    """Simulate every (precision, rate) not yet in ``journal``; returns one summary row per run, in
    order. ``rates`` are numbers (``make_requests(rate)`` builds the stream) or the label ``"trace"``;
    ``progress(row, done, total)`` after each run (replayed ones included)."""
    rows, total = [], len(maps) * len(rates)
    for pmap in maps:
        for rate in rates:
            key = f"run|{_map_id(pmap)}|{rate}"
            rec = journal.get(key)
            if rec is None:
                reqs = make_requests(rate)
                per, summ = simulate(spec, device, pmap, reqs, cfg, slo, progress=per_request_progress)
                row = dict(precision=pmap.name, qps=rate, **summ, **sustains(per, summ))
                journal.add(key, row, per.assign(precision=pmap.name, qps=rate))
                rec = journal.get(key)
            rows.append(rec["row"])
            if progress:
                progress(rec["row"], len(rows), total)
    return pd.DataFrame(rows)


def run_max_qps(spec, device, maps, make_requests, cfg: ServingConfig, slo: SLO, journal: RunJournal,
                attainment: float, progress=None) -> tuple[list, pd.DataFrame]:
    """:func:`sim.serving.max_qps` per precision, every probe journalled (a resumed search replays
    its probes and continues the same bisection). Returns ([(precision, MaxQPS)], all probes)."""
    out, frames = [], []
    for pmap in maps:
        def probe(q, pmap=pmap):
            key = f"probe|{_map_id(pmap)}|{attainment}|{q!r}"
            rec = journal.get(key)
            if rec is None:
                per, s = simulate(spec, device, pmap, make_requests(q), cfg, slo)
                row = dict(precision=pmap.name, qps=q, **s, **sustains(per, s))
                journal.add(key, row)
                rec = journal.get(key)
            return rec["row"]

        res = max_qps(spec, device, pmap, make_requests, cfg, slo, attainment=attainment, probe=probe,
                      progress=progress)
        out.append((pmap.name, res))
        frames.append(res.probes)
    return out, pd.concat(frames, ignore_index=True)


def requests_table(journal: RunJournal) -> pd.DataFrame | None:
    """The per-request rows of every journalled run (read back from their CSVs)."""
    if journal.folder is None:
        frames = [r["requests_df"] for r in journal.records.values() if "requests_df" in r]
    else:
        frames = [pd.read_csv(journal.folder / r["requests_csv"]) for r in journal.records.values()
                  if "requests_csv" in r]
    return pd.concat(frames, ignore_index=True) if frames else None
