"""Sizing: how much of a chip should be low-precision units, for given models, maps and budgets.

The question (seed 000, section 5, made quantitative): for a model (or several sizes), a precision
map of quantization ratio Q_r, a die-area budget (mm2) and a power budget (W) at a process node,
and a workload (batch sizes, prompt and context), which split of the tensor-array area between
unit kinds (``bf16``, ``fp8``, ``mxint4``, ...) minimises the objective?

* **Designs** come from the accelerator generator (:mod:`hwmodels.generator`): a base design (the
  bundled ``custom-mx`` by default: node, clock, cores, SRAM, memory stacks, links) whose ``units``
  are replaced by the split; the first kind's MACs per core are solved so that the die area equals
  the budget (the area is affine in them), the others get their ``area_share`` of the tensor
  arrays. Every design runs at the same board power budget (``power_w``; default the base design's
  derived TDP), so a split cannot win by drawing more power. The grid is every split in steps of
  ``step`` with the first kind (the high-precision default, which runs everything the map leaves
  high) at least one step.
* **Maps**: a precision map per (model, Q_r) from a rule (:func:`ratio_map`): ``size`` (the largest
  matmuls first, middle layers before the first and last ones, lm_head and embeddings last) or the
  ranking of a searched smaller model of the same family (``transfer``: a ``quant search`` map's
  low ops by projection and relative depth first); or a map file; Q_r itself may come from a Law 1
  fit (:func:`qr_from_law`, with its interval). Matmuls of the map's low set run in ``low`` (weights
  and activations: seed 000's MX setting), the rest in ``high``; attention and the KV cache stay in
  ``high``.
* **Parallelism**: a model that does not fit one device at the largest batch gets the smallest
  tensor-parallel degree that does (up to the design's scale-up domain), the same for every split.
* **Cost**: one vectorised :func:`sim.latency.latency_table` call per (model, layout) over every
  design and map (so thousands of design points take seconds).

``vary`` searches design numbers too (SRAM, memory stacks, cores, clock: any key of the design
file, dotted into mappings), every combination crossed with every split: the area they take comes
out of the tensor arrays, so ``sram_mb`` against compute is a real trade.

Outputs (plain DataFrames): :func:`size` returns ``points`` (every design x map x batch, with the
split, area, peaks and the objective columns), ``best`` (the optimal split per model, Q_r and batch)
and ``front`` (the Pareto-optimal splits in decode latency vs J/token per model, Q_r and batch).
Everything priced is an estimate: the generator's areas are LLMCompass-style (calibrated on the
A100 die, checked on the H100's), energies are the H100 microbenchmark's scaled by node, kernel
constants on a generated device are transferred from the GPUs (the ``calibrated`` column says so).
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd
import yaml

from mpqsim import InputError, choices_hint
from mpqsim.pareto import pareto

#: objective -> (column, min|max, what it is). A request is the prompt's prefill and ``output_tokens``
#: decode steps at context ``context`` (the whole batch together).
OBJECTIVES = {
    "latency": ("request_ms", "min", "request latency: prefill + output_tokens decode steps (ms)"),
    "decode": ("decode_ms", "min", "time per output token (one decode step, ms)"),
    "ttft": ("prefill_ms", "min", "prefill time of the prompt (ms)"),
    "energy": ("request_j_per_token", "min", "J per output token, the prefill's share included"),
    "tok_s_per_mm2": ("tok_s_per_mm2", "max", "output tokens/s per mm2 of silicon (all devices of the layout)"),
    "goodput": ("goodput_qps", "max", "highest request rate served with 90 % of requests within the SLO (serving "
                                      "simulations of the latency/energy front's and a quarter-step grid's designs)"),
}
#: splits within this relative distance of the best objective value are reported as the flat region
NEAR_BEST = 0.01
RULES = ("size", "transfer")
DEFAULT_BASE = "custom-mx"


@dataclass(frozen=True)
class SizingQuestion:
    """What :func:`size` answers; every field has the default of ``mpqsim size``."""

    models: tuple = ("llama-3.1-70b",)
    qrs: tuple = (0.5, 0.9, 0.99)     # quantization ratios (parameters in ``low``)
    kinds: tuple = ("bf16", "fp8", "mxint4")   # unit kinds the tensor area is split between (first: high)
    low: str = "mxint4_32"            # the low format (weights and activations)
    high: str = "bf16"                # the format of everything the map leaves high
    area_mm2: float = 800.0           # die-area budget per device
    power_w: float | None = None      # board power budget per device (None: the base design's TDP)
    base: str = DEFAULT_BASE          # base design: bundled name or design YAML path
    step: float = 0.05                # split grid step
    batches: tuple = (1, 64)
    prompt: int = 1024
    context: int = 2048
    output_tokens: int = 256
    objective: str = "latency"
    rule: str = "size"                # Q_r rule: size | transfer
    attention: str = "high"           # qk/av matmuls and the KV cache: high, or low (the low format)
    transfer_map: str | None = None   # with rule transfer: a searched map of a smaller model
    max_tp: int | None = None         # most devices per replica (None: the design's scale-up domain)
    vary: tuple = ()                  # ((design key, (values...)), ...): also search these (SRAM, stacks, ...)
    slo_ttft_s: float = 2.0           # goodput objective: the SLO requests are judged by
    slo_tpot_s: float = 0.1
    serve_requests: int = 300         # goodput objective: requests per simulated rate
    extra: dict = field(default_factory=dict, compare=False)


# ------------------------------------------------------------------ designs
def base_design(name_or_path: str) -> tuple[dict, str]:
    """The design document of a bundled design (``custom-mx``, ``a100-like``, ``h100-like``) or a file."""
    from pathlib import Path

    from hwmodels.generator import is_design

    bundled = resources.files("hwmodels") / "devices" / f"{name_or_path}.yaml"
    if bundled.is_file():
        text, where = bundled.read_text(), f"design {name_or_path}"
    elif Path(name_or_path).is_file():
        text, where = Path(name_or_path).read_text(), name_or_path
    else:
        raise InputError(f"base design {name_or_path!r} not found: give a bundled design (custom-mx, a100-like, "
                         "h100-like) or a design YAML file")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML in {where}: {' '.join(str(e).split())}") from None
    if not is_design(doc):
        raise InputError(f"{where} is a device file, not an accelerator design (no 'accelerator:' key); "
                         "sizing needs a design the generator can resize")
    return doc, where


def split_grid(n_kinds: int, step: float) -> np.ndarray:
    """Every split of 1 into ``n_kinds`` multiples of ``step``, the first at least one step."""
    if not 0 < step <= 0.5:
        raise InputError(f"--step must be in (0, 0.5], got {step}")
    n = int(round(1 / step))
    if abs(n * step - 1) > 1e-9:
        raise InputError(f"--step must divide 1 (0.05, 0.1, 0.125, 0.25, ...), got {step}")
    rows = [c for c in itertools.product(range(n + 1), repeat=n_kinds - 1) if sum(c) <= n - 1]
    return np.array([[(n - sum(c)) / n, *(x / n for x in c)] for c in rows])


def design_for(base: dict, kinds, fractions, area_mm2: float, power_w: float | None, where: str) -> dict:
    """``base`` with its tensor arrays split ``fractions`` between ``kinds`` and sized to ``area_mm2``."""
    from hwmodels.generator import generate

    doc = copy.deepcopy(base)
    others = {k: {"area_share": float(f)} for k, f in zip(kinds[1:], fractions[1:]) if f > 0}
    # formats the base runs on another array stay on theirs when both are kept (fp8 on bf16 when fp8 gets no array)
    shared = {k: v for k, v in (base.get("units") or {}).items()
              if isinstance(v, dict) and "runs_on" in v and v["runs_on"] in (kinds[0], *others) and k not in others
              and k != kinds[0]}
    doc["units"] = {kinds[0]: {"macs_per_core": 1024}, **others, **shared}
    doc["accelerator"] = f"{base['accelerator']}_" + "_".join(f"{k}-{round(100 * f)}" for k, f in zip(kinds, fractions))
    if power_w is not None:
        doc["tdp_w"] = float(power_w)

    def area(m):
        doc["units"][kinds[0]] = {"macs_per_core": int(m)}
        return generate(doc, where)["area_mm2"]["total"]

    a1, a2 = area(1024), area(2048)
    m = math.floor(1024 + (area_mm2 - a1) * 1024 / (a2 - a1))
    if m < 1:
        raise InputError(f"{where}: {area_mm2:g} mm2 does not hold the design's fixed parts "
                         f"({a1 - (a2 - a1):.0f} mm2 without tensor arrays); raise --area or shrink the base design")
    doc["units"][kinds[0]] = {"macs_per_core": m}
    return doc


def designs(q: SizingQuestion):
    """(split table, device specs) for every split of the question's grid."""
    from hwmodels.generator import TENSOR_UNITS, generate
    from hwmodels.spec import parse_device

    for k in q.kinds:
        if k not in TENSOR_UNITS:
            raise InputError(f"unknown unit kind {k!r}; {choices_hint(TENSOR_UNITS)}")
    if len(set(q.kinds)) != len(q.kinds) or len(q.kinds) < 2:
        raise InputError(f"--units needs two or more different kinds, got {', '.join(q.kinds)}")
    if not q.area_mm2 > 0:
        raise InputError(f"--area must be > 0 mm2, got {q.area_mm2}")
    if q.power_w is not None and not q.power_w > 0:
        raise InputError(f"--power must be > 0 W, got {q.power_w}")
    from hwmodels.spec import vary_design

    base0, where = base_design(q.base)
    power = q.power_w
    if power is None:  # the base design's board power, the same for every split
        power = generate(base0, where)["tdp_w"]["value"]
    grid = split_grid(len(q.kinds), q.step)
    keys = [k for k, _ in q.vary]
    rows, devs, skipped = [], [], []
    for combo in itertools.product(*[v for _, v in q.vary]):
        sets = dict(zip(keys, combo))
        base = vary_design(base0, sets, where) if sets else base0
        try:
            design_for(base, q.kinds, grid[0], q.area_mm2, power, where)
        except InputError as e:
            if not sets:
                raise
            skipped.append((sets, str(e)))
            continue
        for fr in grid:
            doc = design_for(base, q.kinds, fr, q.area_mm2, power, where)
            gen = generate(doc, where)
            dev = parse_device(gen, where)
            devs.append(dev)
            rows.append(dict(design=dev.name, **sets, **{f"share_{k}": float(f) for k, f in zip(q.kinds, fr)},
                             area_mm2=gen["area_mm2"]["total"], power_budget_w=float(power),
                             tensor_area_mm2=gen["area_mm2"].get("tensor_arrays", 0.0),
                             memory_gb=dev.memory_bytes / 1e9, bandwidth_tbs=dev.bandwidth / 1e12,
                             **{f"tflops_{k}": dev.units[k].peak_flops / 1e12 if k in dev.units else 0.0
                                for k in q.kinds}))
    if not rows:
        raise InputError(f"no design variant fits {q.area_mm2:g} mm2: " + "; ".join(f"{a}: {b}" for a, b in skipped[:3]))
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    return df, devs


# ------------------------------------------------------------------ maps for a target Q_r
def _layer(name: str) -> int | None:
    m = re.search(r"\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def _suffix(name: str) -> str:
    return re.sub(r"^.*?\.\d+\.", "", name)


def ratio_map(spec, qr: float, low: str, high: str, rule: str = "size", transfer=None, attention: str = "high"):
    """A matmul-granularity precision map of ``spec`` at quantization ratio ``qr`` (seed 000's Q_r:
    low-precision parameters / all parameters) by ``rule`` (module docstring). Returns the map and
    its achieved Q_r."""
    from quant.precision import OpFormats, PrecisionMap
    from quant.search import SearchSpace
    from workloads.optable import build_optable

    if not 0 <= qr <= 1:
        raise InputError(f"Q_r must be in [0, 1], got {qr}")
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}; {choices_hint(RULES)}")
    lo, hi = OpFormats.of(low, low), OpFormats.of(high, high)
    space = SearchSpace.build(build_optable(spec), "matmul", lo, hi, parse_kv(high), attention=False)
    names = [u[0] for u in space.units]
    heads = {n for n in names if _layer(n) is None}
    mid = (spec.layers - 1) / 2
    prefer = np.zeros(len(names))
    if rule == "transfer":
        if transfer is None:
            raise InputError("rule transfer needs --transfer-map MAP.json (a quant search map of a smaller model)")
        src_low = {n for n, f in transfer.ops.items() if not f.weight.is_high_precision}
        src_layers = max([_layer(n) for n in transfer.ops if _layer(n) is not None] + [0]) + 1
        by = {(_suffix(n), _layer(n)) for n in src_low if _layer(n) is not None}
        if not by:
            raise InputError(f"transfer map {transfer.name!r} has no low-precision layer ops to transfer")
        for j, n in enumerate(names):
            i = _layer(n)
            if i is not None:
                si = round(i / max(spec.layers - 1, 1) * (src_layers - 1))
                prefer[j] = 0 if (_suffix(n), si) in by else 1
    order = sorted(range(len(names)), key=lambda j: (names[j] in heads, prefer[j], -space.unit_params[j],
                                                     abs((_layer(names[j]) or 0) - mid), j))
    mask = space.fill(order, qr) if qr > 0 else np.zeros(len(names), bool)
    got = space.qr(mask)
    pmap = space.to_map(mask, name=f"{spec.name}-{rule}{'-attnlow' if attention == 'low' else ''}-qr{qr:g}")
    if attention == "low":  # qk/av in the low format, reading a KV cache stored in it
        pmap = PrecisionMap(name=pmap.name, default=pmap.default, kv_cache=lo.weight, ops=pmap.ops,
                            roles={"attention": lo})
    elif attention != "high":
        raise InputError(f"--attention must be high or low, got {attention!r}")
    return pmap, got


def parse_kv(high: str):
    from quant.formats import parse_format

    return parse_format(high)


def qr_from_law(fits_path: str | None, budget: float, size_b: float) -> tuple[float, float, float]:
    """(Q_r, low, high) Law 1 predicts for ``size_b`` billion parameters at a delta-perplexity
    ``budget``: from a ``quant fit`` fits.json (the interval from its joint bootstrap draws; a file
    without them: from the corners of the parameters' intervals, wider), or with no file from seed
    000's published fits (no interval)."""
    import json

    from quant.scaling import PUBLISHED_LAW1

    if fits_path is None:
        if budget not in PUBLISHED_LAW1:
            raise InputError(f"seed 000 publishes Law 1 at budgets {', '.join(map(str, PUBLISHED_LAW1))}; got {budget}")
        k, c = PUBLISHED_LAW1[budget]
        corners = [(k, c)]
    else:
        from mpqsim import checks

        p = checks.input_file(fits_path, "--qr-law")
        try:
            doc = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"malformed JSON in {p}: {e}") from None
        fits = [f for f in doc.get("law1", []) if abs(f.get("meta", {}).get("budget", -1) - budget) < 1e-12]
        if not fits:
            have = sorted(f.get("meta", {}).get("budget") for f in doc.get("law1", []))
            raise InputError(f"{p}: no Law 1 fit at budget {budget}; it has {', '.join(map(str, have)) or 'none'}")
        f = fits[0]
        k, c = f["params"]["k"], f["params"]["c"]
        if f.get("samples"):  # the joint bootstrap draws: the interval at the fit's level
            draws = np.asarray(f["samples"], float)
            qd = np.clip(1 - (math.log(size_b) - draws[:, 1]) / draws[:, 0], 0, 1)
            level = float(f.get("level", 0.9))
            lo, hi = np.quantile(qd, [(1 - level) / 2, 1 - (1 - level) / 2])
            return float(np.clip(1 - (math.log(size_b) - c) / k, 0, 1)), float(lo), float(hi)
        iv = f.get("intervals", {})
        corners = [(k, c)] + [(a, b) for a in iv.get("k", []) for b in iv.get("c", []) if np.isfinite(a) and np.isfinite(b)]

    def q(kk, cc):
        return float(np.clip(1 - (math.log(size_b) - cc) / kk, 0, 1))

    vals = [q(*kc) for kc in corners]
    return vals[0], (min(vals) if len(vals) > 1 else float("nan")), (max(vals) if len(vals) > 1 else float("nan"))


# ------------------------------------------------------------------ the answer
def _layout_for(spec, device, pmap, q: SizingQuestion):
    """The smallest tensor-parallel degree at which ``pmap`` fits at the largest batch (memory does
    not depend on the split)."""
    from sim.collectives import per_node
    from sim.latency import latency_table
    from workloads.parallel import Layout, tp_degrees

    last = None
    for t in tp_degrees(spec, q.max_tp or max(1, per_node(device.interconnect))):
        last = Layout(t)
        df = latency_table(spec, [device], [pmap], [max(q.batches)], q.prompt, q.context, layout=last)
        if df.fits.all():
            return last
    return last or Layout(1)


def _objectives(df: pd.DataFrame, q: SizingQuestion) -> pd.DataFrame:
    out = q.output_tokens
    df["request_ms"] = df["prefill_ms"] + out * df["decode_ms"]
    df["request_j_per_token"] = (df["prefill_j_per_token"] * df["prompt"] + df["decode_j_per_token"] * out) / out
    df["tok_s_per_mm2"] = df["batch"] * out / (df["request_ms"] / 1e3) / (df["area_mm2"] * df["devices"])
    return df


def size(q: SizingQuestion, maps_by_model: dict | None = None, progress=None) -> dict:
    """Price every split for every model and map (see the module docstring); returns
    ``dict(points=..., best=..., front=..., maps=...)``. ``best`` holds, per (model, map, batch),
    the split that optimises the objective (ties broken by J/token, then prefill time) and, in
    ``<kind>_lo`` / ``<kind>_hi``, the range of each kind's share over the splits within
    :data:`NEAR_BEST` of it (a flat optimum says the split hardly matters there)."""
    from sim.latency import latency_table
    from workloads import load_model

    if q.objective not in OBJECTIVES:
        raise InputError(f"unknown objective {q.objective!r}; {choices_hint(OBJECTIVES)}")
    for what, v in (("--output-tokens", q.output_tokens), ("--prompt", q.prompt), ("--context", q.context)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{what} must be a whole number >= 1, got {v!r}")
    specs = [load_model(m) for m in q.models]
    splits, devs = designs(q)
    frames, map_rows = [], []
    todo = []
    for mname, spec in zip(q.models, specs):
        if maps_by_model and mname in maps_by_model:
            from quant.precision import map_summary
            from workloads.optable import build_optable

            table = build_optable(spec)
            for pmap in maps_by_model[mname]:
                todo.append((spec, pmap, map_summary(table, pmap)["q_r"]))
        else:
            qrs = q.extra.get("qrs_by_model", {}).get(mname, q.qrs)
            todo += [(spec, *ratio_map(spec, qr, q.low, q.high, q.rule, q.extra.get("transfer"), q.attention))
                     for qr in qrs]
    by_memory: dict[float, list] = {}  # designs of one memory capacity share a layout (memory is split-independent)
    for d in devs:
        by_memory.setdefault(d.memory_bytes, []).append(d)
    for i, (spec, pmap, got) in enumerate(todo):
        lays = []
        for group in by_memory.values():
            lay = _layout_for(spec, group[0], pmap, q)
            lays.append(str(lay))
            df = latency_table(spec, group, [pmap], q.batches, q.prompt, q.context, layout=lay)
            df = df.merge(splits, left_on="device", right_on="design", how="left")
            df["qr"], df["target_qr"], df["params_b"] = got, _target(pmap), spec_params(spec) / 1e9
            frames.append(_objectives(df, q))
        map_rows.append(dict(model=spec.name, map=pmap.name, target_qr=_target(pmap), qr=got,
                             layout="/".join(dict.fromkeys(lays))))
        if progress:
            progress(i + 1, len(todo), pmap.name, "/".join(dict.fromkeys(lays)))
    points = pd.concat(frames, ignore_index=True)
    col, sense, _ = OBJECTIVES[q.objective if q.objective != "goodput" else "latency"]  # goodput: below, on the front
    keys = ["model", "precision", "batch"]
    ok = points[points.fits]
    best_rows, fronts = [], []
    for _, g in ok.groupby(keys, sort=False):
        v = g[col] if sense == "min" else -g[col]
        g = g.assign(_v=v).sort_values(["_v", "request_j_per_token", "prefill_ms"], kind="stable")
        top = g.iloc[0]
        near = g[g["_v"] <= top["_v"] + NEAR_BEST * abs(top["_v"])]
        row = top.drop("_v").to_dict()
        for k in q.kinds:
            row[f"{k}_lo"], row[f"{k}_hi"] = near[f"share_{k}"].min(), near[f"share_{k}"].max()
        row["near_best_splits"] = len(near)
        best_rows.append(row)
        fronts.append(g.drop(columns="_v")[pareto(g, "request_ms", "request_j_per_token")])
    best = pd.DataFrame(best_rows)
    front = pd.concat(fronts, ignore_index=True) if fronts else ok.iloc[:0]
    out = dict(points=points, best=best, front=front, maps=pd.DataFrame(map_rows), skipped=splits.attrs["skipped"])
    if q.objective == "goodput":
        out["best"] = goodput(q, todo, devs, front, points, progress)
    return out


def goodput(q: SizingQuestion, todo, devs, front: pd.DataFrame, points: pd.DataFrame, progress=None) -> pd.DataFrame:
    """The goodput objective: for each (model, map), every design on the latency/energy front (any
    batch) is served a Poisson stream of ``serve_requests`` requests (prompt ``q.prompt``, output
    ``q.output_tokens``) and :func:`sim.serving.max_qps` finds the highest rate it sustains with 90 %
    of requests within the SLO, as is every split on a quarter-step grid (shares 0, 0.25, ...); the
    best design per (model, map), one row each, with its rate and rate per mm2. Other splits are
    not simulated (a serving simulation per split would take minutes per map)."""
    from sim.serving import SLO, ServingConfig, max_qps
    from sim.workload_gen import Lengths, synthetic
    from workloads.parallel import Layout

    slo = SLO(ttft_s=q.slo_ttft_s, tpot_s=q.slo_tpot_s)
    by_name = {d.name: d for d in devs}
    rows = []
    for spec, pmap, got in todo:
        cands = front[(front.model == spec.name) & (front.precision == pmap.name)]
        mine = points[(points.model == spec.name) & (points.precision == pmap.name) & points.fits]
        shares = mine[[c for c in mine.columns if c.startswith("share_")]].to_numpy()
        coarse = mine[np.isclose((shares * 4) % 1, 0, atol=1e-9).all(1) | np.isclose((shares * 4) % 1, 1, atol=1e-9).all(1)]
        for name in dict.fromkeys(list(cands.design) + list(coarse.design)):
            r = points[(points.design == name) & (points.precision == pmap.name)].iloc[0]
            lay = Layout(int(r.devices)) if int(r.devices) > 1 else Layout()

            def make(qps, spec=spec):
                return synthetic(q.serve_requests, qps, Lengths(q.prompt, what="prompt"),
                                 Lengths(q.output_tokens, what="output"), seed=0, max_len=spec.max_positions)

            res = max_qps(spec, by_name[name], pmap, make, ServingConfig(layout=lay), slo, attainment=0.9, lo=0.25,
                          hi=8.0, tol=0.1)
            row = r.drop(labels=["batch"]).to_dict()
            row.update(goodput_qps=res.qps, goodput_capped=res.capped,
                       goodput_qps_per_mm2=res.qps / (r.area_mm2 * r.devices), slo_ttft_s=slo.ttft_s,
                       slo_tpot_s=slo.tpot_s, simulations=len(res.probes))
            rows.append(row)
        if progress:
            progress(len(rows), len(rows), f"{pmap.name}: goodput of the front's and the quarter-step designs", "")
    g = pd.DataFrame(rows)
    if g.empty:
        return g
    best = g.sort_values(["goodput_qps", "request_j_per_token"], ascending=[False, True], kind="stable")
    return best.groupby(["model", "precision"], sort=False).head(1).reset_index(drop=True)


def spec_params(spec) -> float:
    from workloads.optable import build_optable, total_params

    return float(total_params(build_optable(spec)))


def _target(pmap) -> float:
    m = re.search(r"qr([0-9.]+)$", pmap.name)
    return float(m.group(1)) if m else float("nan")


__all__ = ["SizingQuestion", "OBJECTIVES", "RULES", "base_design", "designs", "design_for", "split_grid", "ratio_map",
           "qr_from_law", "size"]
