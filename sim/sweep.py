"""Design-space sweeps: a YAML grid -> one results table, written as it goes and resumable.

A spec names lists to cross (every key is checked; an unknown one is an error)::

    models: [llama-2-7b, llama-3.1-70b]      # bundled names or config.json paths
    devices: [h100-sxm, a100-80gb, my_accel.yaml]
    precisions: [bf16, fp8, w4a16, mxint4]   # presets, or precision-map JSON paths
    batches: [1, 8, 64]
    prompts: [1024]                          # prefill lengths
    contexts: [2048]                         # decode contexts
    designs:                                 # optional: generated accelerators, every combination
      - {base: custom-mx, vary: {sram_mb: [32, 64], memory.stacks: [4, 6], "units.mxint4.macs_per_core": [4096, 8192]}}
    layouts: [{tp: 1}, {tp: 8}, {tp: 4, pp: 2}]   # optional (default one device)
    engine: fused                            # optional
    power_caps: [null, 500]                  # optional what-if caps (W; null = the TDP)
    serving: {qps: [1, 4, 16], requests: 200, output: 128, slo_ttft: 2.0, slo_tpot: 0.1}   # optional

With ``serving``, every (model, layout, prompt, cap, device, precision) is also served a Poisson
stream of ``requests`` requests (the prompt length, ``output`` tokens each) at every rate in
``qps`` (sim.serving: TTFT/TPOT percentiles, throughput, goodput, SLO attainment, whether the
rate is sustained); those rows go to ``out/serving.parquet`` (parts in ``out/sparts/``, written
with the chunk's latency part, resumed the same way).

The grid is cut into chunks, one per (model, layout, prompt, context, cap): each chunk is one
vectorised :func:`sim.latency.latency_table` call over every device, precision and batch size
(per device and precision where one of them cannot take the layout), and is
written to ``out/parts/NNNNNN.parquet`` the moment it finishes (a temporary file renamed into
place, so a ``kill -9`` leaves only whole parts). A re-run of the same spec into the same folder
computes only the missing chunks; ``out/results.parquet`` (and CSV on request) is the parts in
grid order, so an interrupted and resumed sweep ends with exactly the table of an uninterrupted
one. Layouts a model cannot take (heads that do not split) and configurations that do not fit are
rows too (``fits`` False; ``error`` names why a layout is impossible). Backends: ``inprocess``
(default), ``process`` (a local process pool) and ``ray`` (``pip install 'mpqsim[ray]'``; one Ray
task per chunk on a cluster at ``address``, or on a local Ray instance started for the sweep and
stopped after it; the workers return the chunk's table and the driver writes the part, so only the
driver needs the output folder, while every worker needs mpqsim installed and any device or map
files the spec names at the same paths). Every backend gives the same table.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from mpqsim import InputError

SPEC_KEYS = ("models", "devices", "designs", "precisions", "batches", "prompts", "contexts", "layouts", "engine",
             "power_caps", "serving")
SERVING_KEYS = ("qps", "requests", "output", "slo_ttft", "slo_tpot")
BACKENDS = ("inprocess", "process", "ray")


@dataclass(frozen=True)
class SweepSpec:
    models: tuple
    devices: tuple
    precisions: tuple
    batches: tuple
    prompts: tuple = (1024,)
    contexts: tuple = (1024,)
    layouts: tuple = ((1, 1),)
    engine: str = "fused"
    power_caps: tuple = (None,)
    serve_qps: tuple = ()             # serving: request rates (empty: no serving runs)
    serve_requests: int = 200
    serve_output: int = 128
    slo_ttft: float = 2.0
    slo_tpot: float = 0.1
    source: str = field(default="", compare=False)

    @property
    def chunks(self) -> list[tuple]:
        return list(itertools.product(self.models, self.layouts, self.prompts, self.contexts, self.power_caps))

    @property
    def points(self) -> int:
        return len(self.chunks) * len(self.devices) * len(self.precisions) * len(self.batches)

    def digest(self) -> str:
        d = asdict(self)
        d.pop("source")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _list(doc, key, where, kind=str, default=None):
    v = doc.get(key, default)
    if v is None:
        raise InputError(f"{where}: missing {key}")
    if not isinstance(v, list) or not v:
        raise InputError(f"{where}: {key} must be a non-empty list")
    for x in v:
        if kind is int and (isinstance(x, bool) or not isinstance(x, int) or x < 1):
            raise InputError(f"{where}: {key} must be whole numbers >= 1, got {x!r}")
        if kind is str and not isinstance(x, str):
            raise InputError(f"{where}: {key} must be names, got {x!r}")
    return tuple(v)


def load_spec(path) -> SweepSpec:
    """Read and check a sweep spec: every name resolves (models, devices, precisions) before work starts."""
    from hwmodels import load_device
    from quant.precision import preset_map
    from sim.engines import check_engine
    from workloads import load_model

    where = str(path)
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise InputError(f"cannot read sweep spec {where}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InputError(f"malformed YAML in {where}: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{where}: a sweep spec is a YAML mapping of {', '.join(SPEC_KEYS)}")
    bad = sorted(set(doc) - set(SPEC_KEYS))
    if bad:
        raise InputError(f"{where}: unknown key(s) {', '.join(bad)}; valid: {', '.join(SPEC_KEYS)}")
    models = _list(doc, "models", where)
    devices = _list(doc, "devices", where) if "devices" in doc or "designs" not in doc else ()
    devices = tuple(devices) + _designs(doc.get("designs"), where)
    precisions = _list(doc, "precisions", where)
    for m in models:
        load_model(m)
    for d in devices:
        load_device(d)
    for p in precisions:
        _pmap(p) if p.endswith(".json") else preset_map(p)
    layouts = []
    for lay in doc.get("layouts") or [{"tp": 1}]:
        if not isinstance(lay, dict) or set(lay) - {"tp", "pp"}:
            raise InputError(f"{where}: each layout is a mapping of tp and pp, got {lay!r}")
        tp, pp = lay.get("tp", 1), lay.get("pp", 1)
        for what, v in (("tp", tp), ("pp", pp)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{where}: layout {what} must be a whole number >= 1, got {v!r}")
        layouts.append((tp, pp))
    caps = doc.get("power_caps", [None])
    if not isinstance(caps, list) or not caps or any(c is not None and (isinstance(c, bool) or not isinstance(c, (int, float))
                                                                        or c <= 0) for c in caps):
        raise InputError(f"{where}: power_caps must be a list of watts > 0 (or null for the TDP)")
    serving = _serving(doc.get("serving"), where)
    return SweepSpec(models, devices, precisions, _list(doc, "batches", where, int),
                     _list(doc, "prompts", where, int, [1024]), _list(doc, "contexts", where, int, [1024]),
                     tuple(layouts), check_engine(doc.get("engine", "fused")),
                     tuple(float(c) if c is not None else None for c in caps), **serving, source=where)


def _serving(doc, where: str) -> dict:
    """``serving: {qps: [...], requests, output, slo_ttft, slo_tpot}`` -> SweepSpec fields."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{where}: serving must be a mapping of {', '.join(SERVING_KEYS)}")
    bad = sorted(set(doc) - set(SERVING_KEYS))
    if bad:
        raise InputError(f"{where}: serving has unknown key(s) {', '.join(bad)}; valid: {', '.join(SERVING_KEYS)}")
    qps = doc.get("qps")
    if not isinstance(qps, list) or not qps or any(isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0
                                                   for q in qps):
        raise InputError(f"{where}: serving.qps must be a non-empty list of request rates > 0")
    out = dict(serve_qps=tuple(float(q) for q in qps))
    for key, field_, kind in (("requests", "serve_requests", int), ("output", "serve_output", int),
                              ("slo_ttft", "slo_ttft", float), ("slo_tpot", "slo_tpot", float)):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (kind is int and v != int(v)):
                raise InputError(f"{where}: serving.{key} must be a {'whole ' if kind is int else ''}number > 0, got {v!r}")
            out[field_] = kind(v)
    return out


def _designs(entries, where: str) -> tuple:
    """``designs: [{base: NAME, vary: {KEY: [numbers]}}]`` -> device names ``NAME[KEY=v,...]``, every combination."""
    if entries is None:
        return ()
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}: designs must be a non-empty list of {{base: DESIGN, vary: {{KEY: [numbers]}}}}")
    out = []
    for e in entries:
        if not isinstance(e, dict) or set(e) - {"base", "vary"} or "base" not in e:
            raise InputError(f"{where}: each designs entry is {{base: DESIGN, vary: {{KEY: [numbers]}}}}, got {e!r}")
        vary = e.get("vary") or {}
        if not isinstance(vary, dict) or not all(isinstance(v, list) and v for v in vary.values()):
            raise InputError(f"{where}: designs.vary maps design keys to non-empty lists of numbers, got {vary!r}")
        for combo in itertools.product(*vary.values()):
            for v in combo:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise InputError(f"{where}: designs.vary values must be numbers, got {v!r}")
            sets = ",".join(f"{k}={v:g}" for k, v in zip(vary, combo))
            out.append(f"{e['base']}[{sets}]" if sets else str(e["base"]))
    return tuple(out)


def _pmap(p: str):
    from quant.precision import PrecisionMap, preset_map

    return PrecisionMap.load(p) if p.endswith(".json") else preset_map(p)


def run_chunk(spec: SweepSpec, index: int) -> pd.DataFrame:
    """One chunk of the grid: every device, precision and batch size of one (model, layout, prompt,
    context, cap), in that order (precision-major, then device, then batch)."""
    from hwmodels import load_device
    from sim.latency import latency_table
    from workloads import load_model
    from workloads.parallel import Layout

    model, (tp, pp), prompt, context, cap = spec.chunks[index]
    spec_m = load_model(model)
    over = {"power_cap_w": cap} if cap is not None else None
    base = dict(chunk=index, model_arg=model, tp=tp, pp=pp, power_cap_arg=cap if cap is not None else float("nan"))

    def table(devs, precs):
        try:
            df = latency_table(spec_m, [load_device(d, over) for d in devs], [_pmap(p) for p in precs],
                               list(spec.batches), prompt, context, engine=spec.engine, layout=Layout(tp, pp))
            err = ""
        except InputError as e:  # a layout or length this model or device cannot take: rows that say why
            df = pd.DataFrame(dict(batch=list(spec.batches) * len(devs) * len(precs), prompt=prompt, context=context,
                                   fits=False))
            err = str(e)
        nb = len(spec.batches)
        return df.assign(device_arg=[d for _ in precs for d in devs for _ in range(nb)],
                         precision_arg=[p for p in precs for _ in devs for _ in range(nb)], error=err)

    try:  # every device and precision in one vectorised call
        df = latency_table(spec_m, [load_device(d, over) for d in spec.devices], [_pmap(p) for p in spec.precisions],
                           list(spec.batches), prompt, context, engine=spec.engine, layout=Layout(tp, pp))
        nb = len(spec.batches)
        df = df.assign(device_arg=[d for _ in spec.precisions for d in spec.devices for _ in range(nb)],
                       precision_arg=[p for p in spec.precisions for _ in spec.devices for _ in range(nb)], error="")
    except InputError:  # one of them cannot: each (precision, device) alone, so the rest still price
        df = pd.concat([table([d], [p]) for p in spec.precisions for d in spec.devices], ignore_index=True)
    df = df.assign(**base)
    specs = {d: load_device(d, over) for d in spec.devices}  # die area (generated designs) and board power
    df["area_mm2"] = df.device_arg.map({d: float(x.area.get("total", float("nan"))) for d, x in specs.items()})
    df["tdp_w"] = df.device_arg.map({d: float(x.tdp_w) for d, x in specs.items()})
    first = list(base) + ["device_arg", "precision_arg", "error"]
    return df[first + [c for c in df.columns if c not in first]]


def run_serving_chunk(spec: SweepSpec, index: int) -> pd.DataFrame:
    """The serving runs of one chunk: every device, precision and rate of ``spec.serve_qps``
    (precision-major, then device, then rate); a setup that cannot run (layout, memory) is one row
    per rate with the reason in ``error``."""
    from hwmodels import load_device
    from sim.serving import SLO, ServingConfig, simulate, sustains
    from sim.workload_gen import Lengths, synthetic
    from workloads import load_model
    from workloads.parallel import Layout

    model, (tp, pp), prompt, context, cap = spec.chunks[index]
    spec_m = load_model(model)
    over = {"power_cap_w": cap} if cap is not None else None
    slo = SLO(ttft_s=spec.slo_ttft, tpot_s=spec.slo_tpot)
    rows = []
    for p in spec.precisions:
        pmap = _pmap(p)
        for d in spec.devices:
            dev = load_device(d, over)
            for q in spec.serve_qps:
                base = dict(chunk=index, model_arg=model, tp=tp, pp=pp, power_cap_arg=cap if cap is not None else
                            float("nan"), device_arg=d, precision_arg=p, model=spec_m.name, device=dev.name,
                            precision=pmap.name, prompt=prompt, output=spec.serve_output, qps=q,
                            requests=spec.serve_requests, slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s)
                try:
                    reqs = synthetic(spec.serve_requests, q, Lengths(prompt, what="prompt"),
                                     Lengths(spec.serve_output, what="output"), seed=0, max_len=spec_m.max_positions)
                    per, summ = simulate(spec_m, dev, pmap, reqs, ServingConfig(layout=Layout(tp, pp),
                                                                                 engine=spec.engine), slo)
                    rows.append(dict(base, error="", **summ, **sustains(per, summ)))
                except InputError as e:
                    rows.append(dict(base, error=str(e)))
    return pd.DataFrame(rows)


def _write_part(parts: Path, index: int, df: pd.DataFrame) -> None:
    final = parts / f"{index:06d}.parquet"
    tmp = parts / f".{index:06d}.{os.getpid()}.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, final)  # atomic: a killed run leaves whole parts or a stray temporary file


def _tables(spec: SweepSpec, index: int) -> tuple:
    """A chunk's latency table and (with ``serving``) its serving table."""
    return run_chunk(spec, index), (run_serving_chunk(spec, index) if spec.serve_qps else None)


def _write(out: Path, index: int, tables: tuple) -> None:
    df, sdf = tables
    if sdf is not None:  # the serving part first: the latency part marks the chunk done
        _write_part(out / "sparts", index, sdf)
    _write_part(out / "parts", index, df)


def _work(args) -> int:
    spec, index, out = args
    _write(Path(out), index, _tables(spec, index))
    return index


def _ray_chunks(spec: SweepSpec, todo: list[int], address: str | None, workers: int | None):
    """Yield (index, table) as Ray tasks finish, in completion order."""
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'mpqsim[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(f"cannot reach a Ray cluster at {address}: {' '.join(str(e).split())[:200]}") from None
    try:
        task = ray.remote(_tables)
        pending = {task.remote(spec, i): i for i in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def run_sweep(spec: SweepSpec, out_dir, backend: str = "inprocess", workers: int | None = None,
              progress=None, address: str | None = None) -> pd.DataFrame:
    """Compute every chunk not yet in ``out_dir`` and return the whole table (also written to
    ``out_dir/results.parquet``). ``progress(done, total)`` after each chunk. ``address``: a Ray
    cluster (``ray://host:10001`` or ``auto``) for the ``ray`` backend; None starts a local one."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    out = Path(out_dir)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    meta = out / "spec.json"
    digest = spec.digest()
    if meta.is_file():
        old = json.loads(meta.read_text()).get("digest")
        if old != digest:
            raise InputError(f"{out} holds a different sweep (spec {old}, this one {digest}); give another -o folder")
    else:
        meta.write_text(json.dumps(dict(digest=digest, spec=asdict(spec)), indent=1, default=str) + "\n")
    sparts = out / "sparts"
    if spec.serve_qps:
        sparts.mkdir(exist_ok=True)
    for stray in list(parts.glob(".*.tmp")) + list(sparts.glob(".*.tmp")):  # left by a killed run
        stray.unlink()
    total = len(spec.chunks)
    todo = [i for i in range(total) if not (parts / f"{i:06d}.parquet").is_file()
            or (spec.serve_qps and not (sparts / f"{i:06d}.parquet").is_file())]
    done = total - len(todo)
    if progress:
        progress(done, total)
    if address is not None and backend != "ray":
        raise InputError("--address names a Ray cluster: it needs --backend ray")
    if backend == "ray":
        for i, tables in _ray_chunks(spec, todo, address, workers):
            _write(out, i, tables)
            done += 1
            if progress:
                progress(done, total)
    elif backend == "inprocess" or len(todo) <= 1:
        for i in todo:
            _write(out, i, _tables(spec, i))
            done += 1
            if progress:
                progress(done, total)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as ex:
            for _ in ex.map(_work, [(spec, i, str(out)) for i in todo], chunksize=max(1, len(todo) // 64)):
                done += 1
                if progress:
                    progress(done, total)
    table = pd.concat([pd.read_parquet(parts / f"{i:06d}.parquet") for i in range(total)], ignore_index=True)
    table = table.convert_dtypes()  # dtypes from the values alone (rows of impossible layouts hold <NA>)
    table.to_parquet(out / "results.parquet", index=False)
    if spec.serve_qps:
        serving = pd.concat([pd.read_parquet(sparts / f"{i:06d}.parquet") for i in range(total)],
                            ignore_index=True).convert_dtypes()
        serving.to_parquet(out / "serving.parquet", index=False)
        table.attrs["serving"] = serving
    return table


__all__ = ["SweepSpec", "load_spec", "run_sweep", "run_chunk", "run_serving_chunk", "BACKENDS"]
