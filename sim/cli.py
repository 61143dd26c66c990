"""``mpqsim latency``, ``serve`` and ``demo``: the cost model and the serving simulator."""

from __future__ import annotations

import os
from dataclasses import replace
import sys
from pathlib import Path

import pandas as pd

from mpqsim import InputError
from mpqsim.cli import floats, ints, names, overrides, show, write_csv


def _overrides(args) -> dict:
    """``--set`` numbers, and ``--power-cap W`` as the device's ``power_cap_w``."""
    over = overrides(args.set)
    if getattr(args, "power_cap", None) is not None:
        if "power_cap_w" in over:
            raise InputError("give the power cap once: --power-cap W or --set power_cap_w=W")
        over["power_cap_w"] = args.power_cap
    return over


def _device_names(text: str) -> list[tuple[str, int | None]]:
    """``h100-sxm,8xh100-sxm`` -> [("h100-sxm", None), ("h100-sxm", 8)] (a count names the devices of one replica)."""
    import re

    out = []
    for name in names(text):
        m = re.fullmatch(r"(\d+)x(.+)", name)
        if m and not Path(name).exists() and int(m.group(1)) >= 1:
            out.append((m.group(2), int(m.group(1))))
        else:
            out.append((name, None))
    return out


def _layouts(args, spec, device, count: int | None) -> list:
    """The layouts --tp / --pp / --ep (and an ``8x`` device count) ask for; ``--tp auto``: every
    tensor-parallel degree that divides the model's heads, within the device's node."""
    from sim.collectives import per_node
    from workloads.parallel import Layout, tp_degrees

    pp = args.pp if args.pp is not None else 1
    if isinstance(pp, int) and pp < 1:
        raise InputError(f"pipeline stages (--pp) must be a whole number >= 1, got {pp}")
    tp_arg = (args.tp or "").strip().lower()
    if tp_arg == "auto":
        most = (count or per_node(device.interconnect) * pp) // pp
        out = [Layout(t, pp, ep=args.ep) for t in tp_degrees(spec, most)]
        if not out:
            raise InputError(f"--tp auto: no tensor-parallel degree of {spec.name} fits {most} device(s)")
        return out
    if tp_arg:
        try:
            tp = int(tp_arg)
        except ValueError:
            raise InputError(f"--tp must be a whole number or 'auto', got {args.tp!r}") from None
    else:
        if count is not None and count % pp:
            raise InputError(f"{count} devices cannot run --pp {pp} stages evenly")
        tp = count // pp if count is not None else 1
    if count is not None and tp * pp != count:
        raise InputError(f"-d {count}x{device.name} is {count} devices but --tp {tp} x --pp {pp} = {tp * pp}")
    return [Layout(tp, pp, ep=args.ep)]


def _precisions(args):
    """The -p presets and the --map file; bf16 when neither is given."""
    from quant.precision import PrecisionMap, preset_map

    if args.precision is None and args.map is None:
        return [preset_map("bf16")]
    maps = [preset_map(p) for p in names(args.precision or "")]
    if args.map:
        maps.append(PrecisionMap.load(args.map))
    if not maps:
        raise InputError("give a precision with -p PRESET[,PRESET] and/or --map FILE.json")
    return maps


def cmd_latency(args) -> int:
    from hwmodels import load_device
    from mpqsim import checks
    from sim.latency import latency_table, per_op_table
    from workloads import load_model

    checks.output_file(args.csv, "--csv")
    spec = load_model(args.model)
    over = _overrides(args)
    named = _device_names(args.device)
    devices = [load_device(d, over) for d, _ in named]
    if not devices:
        raise InputError("no device given (-d NAME[,NAME])")
    maps = _precisions(args)
    batches = ints(args.batch, "batch sizes")
    from sim.engines import check_engine
    from sim.lowering import parse_kernel_choices

    opts = dict(chunk=args.chunk, eager=args.eager, fused_attention=not args.unfused_attention,
                engine=check_engine(args.engine), kernels=parse_kernel_choices(args.kernel))
    layouts = {dev.name: _layouts(args, spec, dev, n) for dev, (_, n) in zip(devices, named)}
    if any(len(v) > 1 or not v[0].trivial for v in layouts.values()):
        return _latency_parallel(args, spec, devices, layouts, maps, batches, opts)
    if args.per_op:
        frames = []
        fit = latency_table(spec, devices, maps, batches, args.prompt, args.context, **opts).set_index(
            ["device", "precision", "batch"])
        for dev in devices:
            for pm in maps:
                for b in batches:
                    df = per_op_table(spec, dev, pm, b, args.prompt, args.context, **opts)
                    row = fit.loc[(dev.name, pm.name, b)]
                    print(f"\n== {spec.name} on {dev.name}, {pm.name}, batch {b}: "
                          f"prompt {args.prompt}, decode at context {args.context} ==")
                    if not row.fits:
                        print(f"warning: this configuration does not fit: it needs {row.total_gb:.1f} GB of the "
                              f"{row.capacity_gb:.0f} GB of {dev.name}", file=sys.stderr)
                    show(df.drop(columns=["kv_fmt"]), floatfmt="{:,.4g}")
                    frames.append(df.assign(model=spec.name, device=dev.name, precision=pm.name, batch=b))
        write_csv(pd.concat(frames, ignore_index=True), args.csv)
        return 0
    df = latency_table(spec, devices, maps, batches, args.prompt, args.context, **opts)
    if not df["fits"].any():
        from sim.latency import check_fit

        worst = df.loc[df["total_gb"].idxmin()]
        dev = next(d for d in devices if d.name == worst["device"])
        check_fit(spec, dev, next(m for m in maps if m.name == worst["precision"]),
                  worst["total_gb"] * 1e9, f"batch {worst['batch']}, context {max(args.prompt, args.context)}")
    cols = ["device", "precision", "batch", "prefill_ms", "prefill_bound", "decode_ms", "decode_bound",
            "decode_tok_s", "prefill_j_per_token", "prefill_power_w", "prefill_clock_mhz", "decode_j_per_token",
            "decode_power_w", "decode_clock_mhz", "power_cap_w", "weights_gb", "kv_gb", "act_gb", "total_gb", "capacity_gb", "fits",
            "gemm_kernels"]
    print(f"{spec.name}: prefill {args.prompt} tokens"
          f"{f' in chunks of {args.chunk}' if args.chunk else ''}, one decode step at context "
          f"{args.context}; times for the whole batch, GB = 1e9 bytes; engine {args.engine}; J per token produced, "
          "average board power and SM clock under the power cap (power_cap_w)")
    from hwmodels.kernels import kernel_params

    uncal = sorted({f"{k} on {d.name}" for d in devices for r in df[~df.calibrated & (df.device == d.name)].itertuples()
                    for k in r.gemm_kernels.split("+") if not kernel_params(k, d.architecture).calibrated})
    if uncal:
        print(f"note: GEMM kernel constants not fitted on the device's architecture (estimated or transferred; "
              f"see benchmarks/fidelity.py): {', '.join(uncal)}", file=sys.stderr)
    show(df[cols])
    if not df["fits"].all():
        print("note: rows with fits=False need more memory than the device has", file=sys.stderr)
    write_csv(df, args.csv)
    return 0


def _latency_parallel(args, spec, devices, layouts, maps, batches, opts) -> int:
    """``latency`` over tensor / pipeline layouts: one row per (device, layout, precision, batch), per-device
    memory, the time in collectives; with several layouts, the fastest one that fits per batch."""
    from sim.latency import latency_table, per_op_table

    frames = []
    for dev in devices:
        for lay in layouts[dev.name]:
            frames.append(latency_table(spec, [dev], maps, batches, args.prompt, args.context, layout=lay, **opts))
    df = pd.concat(frames, ignore_index=True)
    if args.per_op:
        for dev in devices:
            for lay in layouts[dev.name]:
                for pm in maps:
                    for b in batches:
                        t = per_op_table(spec, dev, pm, b, args.prompt, args.context, layout=lay, **opts)
                        print(f"\n== {spec.name} on {lay.devices} x {dev.name} ({lay}), {pm.name}, batch {b}: "
                              f"per device; prompt {args.prompt}, decode at context {args.context} ==")
                        show(t.drop(columns=["kv_fmt"]), floatfmt="{:,.4g}")
        write_csv(df, args.csv)
        return 0
    if not df["fits"].any():
        worst = df.loc[df["total_gb"].idxmin()]
        raise InputError(f"{spec.name} fits no layout asked for: the smallest needs {worst['total_gb']:.1f} GB per device "
                         f"({worst['layout']} on {worst['device']}, {worst['capacity_gb']:.0f} GB); try more devices "
                         "(--tp, --pp) or a lighter precision")
    print(f"{spec.name}: prefill {args.prompt} tokens, one decode step at context {args.context}; times for the whole "
          f"batch through all devices of the layout; memory per device (GB = 1e9 bytes); engine {args.engine}")
    cols = ["device", "layout", "devices", "precision", "batch", "prefill_ms", "prefill_comm_ms", "decode_ms",
            "decode_comm_ms", "decode_tok_s", "decode_j_per_token", "weights_gb", "kv_gb", "total_gb", "capacity_gb",
            "fits"]
    show(df[cols])
    if sum(len(v) for v in layouts.values()) > len(devices):
        ok = df[df.fits]
        best = ok.loc[ok.groupby(["device", "precision", "batch"]).decode_ms.idxmin()]
        print("\nfastest layout that fits, per batch (decode):")
        show(best[["device", "precision", "batch", "layout", "decode_ms", "decode_tok_s", "total_gb"]])
    if not df["fits"].all():
        print("note: rows with fits=False need more memory per device than it has", file=sys.stderr)
    write_csv(df, args.csv)
    return 0


def _kernel_line(spec, device, maps, cfg) -> str:
    """``bf16: cublas, w4a16: cublas+marlin`` (and ``(uncalibrated)`` where the constants are not fitted
    on the device's architecture): what a serve study's iterations are priced with."""
    from sim.costmodel import assign, lower
    from sim.latency import gemm_kernels

    lws = [lower(assign(spec, m, cfg.layout), [device], cfg.eager, kernels=dict(cfg.kernels), engine=cfg.engine)
           for m in maps]
    names, cal = gemm_kernels(lws, [device])
    return ", ".join(f"{m.name}: {n}{'' if c else ' (uncalibrated)'}" for m, n, c in zip(maps, names[:, 0], cal[:, 0]))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_serve(args) -> int:
    from hwmodels import load_device
    from mpqsim import checks
    from sim.serve_runs import RunJournal, check_memory, requests_table, run_max_qps, run_rates, study_settings
    from sim.engines import check_engine
    from sim.lowering import parse_kernel_choices
    from sim.serving import SLO, ServingConfig, check_config
    from sim.workload_gen import Lengths, read_trace, synthetic
    from workloads import load_model

    # every input checked before any simulation starts
    for path, what in ((args.csv, "--csv"), (args.requests_csv, "--requests-csv")):
        checks.output_file(path, what)
    if args.out:
        checks.output_dir(args.out, "--out")
    spec = load_model(args.model)
    named = _device_names(args.device)
    if len(named) != 1:
        raise InputError("serve takes one device (-d NAME, or -d 8xNAME for a tensor-parallel replica)")
    device = load_device(named[0][0], _overrides(args))
    maps = _precisions(args)
    if (args.tp or "").strip().lower() == "auto":
        raise InputError("--tp auto is a latency question; serve takes one layout (--tp N --pp M)")
    layout = _layouts(args, spec, device, named[0][1])[0]
    cfg = ServingConfig(scheduler=args.scheduler, max_batch=args.max_batch, max_tokens=args.max_tokens,
                        replicas=args.replicas, router=args.router, memory_margin=args.memory_margin,
                        cpu_overhead_s=checks.number(args.cpu_overhead_ms, "--cpu-overhead-ms", lo=0) / 1e3,
                        eager=args.eager, engine=check_engine(args.engine),
                        kernels=tuple(sorted(parse_kernel_choices(args.kernel).items())), layout=layout)
    slo = SLO(ttft_s=args.slo_ttft, tpot_s=args.slo_tpot)
    check_config(cfg, slo)
    checks.number(args.attainment, "--attainment (fraction of requests meeting the SLO)", lo=0, hi=1, lo_open=True)
    if args.trace and args.find_max_qps:
        raise InputError("--find-max-qps searches over synthetic rates; it cannot be combined with --trace")
    prompt = Lengths(args.prompt, args.length_dist, args.prompt_spread, what="prompt")
    output = Lengths(args.output, args.length_dist, args.output_spread, what="output")
    if args.trace:
        trace = read_trace(args.trace)
        rates, n_req, mean_out = ["trace"], len(trace), float(trace.output.mean())
        stream_id = dict(trace=str(Path(args.trace).resolve()), rows=n_req, arrival_sum=float(trace.arrival.sum()),
                         tokens=int(trace.prompt.sum() + trace.output.sum()))
    else:
        rates = floats(args.qps, "--qps")
        if not rates:
            raise InputError("--qps is empty; give one or more request rates, e.g. --qps 2,6")
        for q in rates:
            checks.number(q, "request rate in --qps (requests/s)", lo=0, lo_open=True)
        prompt.check(spec.max_positions)
        output.check(spec.max_positions)
        checks.integer(args.requests, "--requests", lo=1)
        checks.integer(args.seed, "--seed", lo=0)
        checks.choice(args.arrival, "arrival process", ("poisson", "gamma"))
        checks.number(args.cv, "--cv", lo=0, lo_open=True, hi=100)
        n_req, mean_out = args.requests, float(args.output)
        stream_id = dict(requests=args.requests, prompt=[args.prompt, args.length_dist, args.prompt_spread],
                         output=[args.output, args.length_dist, args.output_spread], seed=args.seed,
                         arrival=args.arrival, cv=args.cv)
    check_memory(n_req, mean_out, warn=_say)

    def stream(qps):
        if qps == "trace":
            return trace
        reqs = synthetic(args.requests, qps, prompt, output, args.seed, args.arrival, args.cv, spec.max_positions)
        if reqs.attrs.get("clipped"):
            _say(f"note: {reqs.attrs['clipped']} drawn lengths clipped to [1, {spec.max_positions}] tokens")
        return reqs

    journal = RunJournal(args.out, study_settings(spec, device, cfg, slo, stream_id),
                         keep_requests=bool(args.out or args.requests_csv))
    if args.out and journal.records:
        _say(f"resuming {args.out}: {len(journal.records)} finished simulation(s) replayed from its journal")
    tty = sys.stderr.isatty()
    try:
        if args.find_max_qps:
            def probe_line(row):
                _say(f"  probe {row['precision']} @ {row['qps']:.4g} req/s: offered {row['offered_rate']:.4g}, "
                     f"served {row['served_rate']:.4g} req/s, "
                     f"SLO attainment {100 * row['slo_attainment']:.1f} %, "
                     f"{'sustained' if row['sustained'] else 'not sustained'}")

            found, df = run_max_qps(spec, device, maps, stream, cfg, slo, journal, args.attainment,
                                    progress=probe_line)
            print(f"{spec.name} on {args.replicas} x {device.name}; engine {cfg.engine}; GEMM kernels "
                  f"{_kernel_line(spec, device, maps, cfg)}")
            for name, res in found:
                bound = "at least " if res.capped else ""
                cap = " (the search reached its cap: the true maximum is higher)" if res.capped else ""
                print(f"{name}: highest sustained rate with {100 * args.attainment:.0f} % of requests within TTFT "
                      f"{slo.ttft_s} s and TPOT {slo.tpot_s} s: {bound}{res.qps:.2f} requests/s "
                      f"({len(res.probes)} simulations){cap}")
        else:
            from tqdm import tqdm

            bar = tqdm(total=n_req, desc="serve", file=sys.stderr, unit="req", disable=not tty)

            def run_line(row, done, total):
                bar.reset(total=n_req)
                if not tty:
                    _say(f"  run {done}/{total}: {row['precision']} @ {row['qps']}: {row['requests']} requests, "
                         f"{row['requests_per_s']:.4g} req/s served, TTFT p99 {row['ttft_p99_s']:.4g} s")

            try:
                df = run_rates(spec, device, maps, rates, stream, cfg, slo, journal, progress=run_line,
                               per_request_progress=bar.update if tty else None)
            finally:
                bar.close()
            cols = ["precision", "qps", "requests_per_s", "output_tokens_per_s", "goodput_requests_per_s",
                    "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "batch_mean",
                    "kv_util_mean", "preemptions", "mfu", "energy_per_output_token_j", "energy_per_request_j",
                    "power_w", "kv_capacity_tokens"]
            print(f"{spec.name} on {args.replicas} x {layout.devices} x {device.name} ({layout} per replica), "
                  f"{args.scheduler} scheduler; SLO TTFT {slo.ttft_s} s, "
                  f"TPOT {slo.tpot_s} s; engine {cfg.engine}; GEMM kernels {_kernel_line(spec, device, maps, cfg)}")
            show(df[cols], floatfmt="{:,.4g}")
            unsustained = df[~df.sustained]
            if len(unsustained):
                _say(f"note: {len(unsustained)} run(s) did not keep up with their arrivals (served rate below the "
                     "offered rate or a growing queue): their latencies depend on the number of requests")
    except KeyboardInterrupt:
        done = [r["row"] for r in journal.records.values()]
        where = f"; re-run the same command to resume from {args.out}" if args.out else \
            "; give -o DIR to journal finished runs and resume"
        if done and not args.find_max_qps:  # nothing finished is lost: show (and write) what completed
            part = pd.DataFrame(done)
            show(part[[c for c in ("precision", "qps", "requests_per_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s",
                                   "tpot_p99_s", "mfu") if c in part]], floatfmt="{:,.4g}")
            write_csv(part, args.csv)
        _say(f"mpqsim: interrupted after {len(done)} finished simulation(s){where}")
        return 130
    # what a report needs to read the table alone: the setup and the SLO the attainment is against
    df = pd.concat([pd.DataFrame(dict(model=spec.name, device=device.name, replicas=args.replicas,
                                      slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s), index=df.index), df], axis=1)
    write_csv(df, args.csv)
    if args.requests_csv:
        per = requests_table(journal)
        if per is not None:
            write_csv(per, args.requests_csv)
    if args.out:
        tmp = Path(args.out) / "summary.csv.tmp"
        df.to_csv(tmp, index=False)
        os.replace(tmp, Path(args.out) / "summary.csv")
        _say(f"wrote {Path(args.out) / 'summary.csv'} (journal and per-request CSVs in {args.out})")
    return 0


def cmd_demo(args) -> int:
    from mpqsim import checks
    from reports.demo import run_demo

    checks.output_dir(args.out, "-o/--out")
    path = run_demo(Path(args.out), log=lambda m: print(m, file=sys.stderr))
    print(f"report: {path.resolve()}  (open it in a browser; Markdown twin: {path.with_suffix('.md').resolve()})")
    return 0


# ---------------------------------------------------------------- parser
def cmd_gemm(args) -> int:
    """One GEMM y[m x n] = x[m x k] . W[n x k]^T at several m: time, TFLOP/s, weight GB/s, speed-up vs bf16."""
    from hwmodels.spec import load_device
    from quant.formats import parse_format
    from sim.gemm import price_gemm

    dev = load_device(args.device, _overrides(args))
    m = ints(args.m, "-m")
    if args.n <= 0 or args.k <= 0:
        raise InputError(f"-n and -k must be > 0, got {args.n} and {args.k}")
    parse_format(args.weight)
    if args.act:
        parse_format(args.act)
    g = price_gemm(dev, m, args.n, args.k, args.weight, args.act, kernel=args.kernel)
    ref = price_gemm(dev, m, args.n, args.k, "bf16")
    df = pd.DataFrame(dict(m=g.m.astype(int), time_us=g.time_s * 1e6, tflops=g.tflops, weight_gbps=g.weight_gbps,
                           speedup_vs_bf16=ref.time_s / g.time_s, bound=g.bound, energy_uj=g.energy_j * 1e6,
                           power_w=g.power_w, clock_mhz=g.clock_mhz))
    cal = "calibrated" if g.calibrated else "UNCALIBRATED (estimated or transferred constants)"
    print(f"{dev.name} ({dev.architecture}): {args.n} x {args.k} weights {g.weight_fmt}, activations {g.act_fmt}; "
          f"kernel {g.kernel} on the {g.unit} unit, {cal}; bf16 reference kernel {ref.kernel}")
    show(df, floatfmt="{:,.2f}")
    write_csv(df, args.csv)
    return 0


def cmd_collective(args) -> int:
    """One collective among -n devices at several sizes: time, algorithm, bus bandwidth."""
    from hwmodels.spec import load_device
    from mpqsim import checks
    from sim.collectives import price_collective

    checks.output_file(args.csv, "--csv")
    dev = load_device(args.device, _overrides(args))
    sizes = floats(args.bytes, "--bytes")
    if args.per_node is not None:
        checks.integer(args.per_node, "--per-node", lo=1, hi=1_000_000)
    c = price_collective(dev, args.collective, args.n, sizes, args.per_node, oneshot=args.oneshot)
    df = pd.DataFrame(dict(bytes=c.size_bytes, time_us=c.time_s * 1e6, algorithm=c.algorithm, bus_gbs=c.bus_gbs))
    print(f"{args.collective} over {c.n_devices} x {dev.name}, {c.devices_per_node} per node: {c.level} ({c.link}); "
          f"constants fitted on NCCL timings of A100 systems (benchmarks/collectives.py)")
    show(df, floatfmt="{:,.4g}")
    write_csv(df, args.csv)
    return 0


def cmd_sweep(args) -> int:
    """A design-space sweep from a YAML spec: one results table, written as it goes, resumable."""
    from mpqsim import checks
    from sim.sweep import load_spec, run_sweep

    checks.output_dir(args.out, "-o/--out")
    checks.output_file(args.csv, "--csv")
    if args.workers is not None:
        checks.integer(args.workers, "--workers", lo=1, hi=1024)
    spec = load_spec(args.spec)
    from tqdm import tqdm

    bar = tqdm(total=len(spec.chunks), desc="sweep", unit="chunk", file=sys.stderr, disable=not sys.stderr.isatty())

    def progress(done, total):
        bar.n = done
        bar.refresh()

    print(f"sweep {args.spec}: {spec.points:,} design points in {len(spec.chunks):,} chunks -> {args.out}", file=sys.stderr)
    try:
        df = run_sweep(spec, args.out, backend=args.backend, workers=args.workers, progress=progress,
                       address=args.address)
    except KeyboardInterrupt:
        _say(f"mpqsim: interrupted; every finished chunk is in {args.out}/parts: re-run the same command to resume")
        return 130
    finally:
        bar.close()
    print(f"{len(df):,} rows ({int(df.fits.sum()):,} fit) in {Path(args.out) / 'results.parquet'}")
    write_csv(df, args.csv)
    return 0


def cmd_size(args) -> int:
    """How much of a chip should be low-precision: the optimal split of tensor area between unit kinds."""
    from mpqsim import checks
    from quant.precision import PrecisionMap
    from sim.sizing import OBJECTIVES, SizingQuestion, qr_from_law, size, spec_params
    from workloads import load_model

    models = names(args.model)
    checks.choice(args.objective, "--objective", OBJECTIVES)
    if args.out:
        checks.output_dir(args.out, "-o/--out")
    extra, maps_by_model = {}, None
    qrs = tuple(floats(args.qr, "--qr")) if args.qr else (0.5, 0.9, 0.99)
    if any(not 0 <= x <= 1 for x in qrs):
        raise InputError(f"--qr values must be in [0, 1], got {args.qr}")
    given = [o for o in ("qr", "qr_law", "map") if getattr(args, o) is not None]
    if len(given) > 1:
        raise InputError(f"give one of --qr, --qr-law or --map (got {', '.join('--' + g.replace('_', '-') for g in given)})")
    if args.map is not None:
        if len(models) != 1:
            raise InputError("--map is one model's precision map: give one model with -m")
        maps_by_model = {models[0]: [PrecisionMap.load(m) for m in names(args.map)]}
    if args.transfer_map:
        extra["transfer"] = PrecisionMap.load(args.transfer_map)
    if args.rule == "transfer" and not args.transfer_map:
        raise InputError("--rule transfer needs --transfer-map MAP.json (a quant search map of a smaller model)")
    checks.choice(args.rule, "--rule", ("size", "transfer"))
    if args.qr_law is not None:
        budget = checks.number(args.budget, "--budget", lo=0, lo_open=True)
        extra["qrs_by_model"], law_rows = {}, []
        for m in models:
            size_b = spec_params(load_model(m)) / 1e9
            mid, lo, hi = qr_from_law(None if args.qr_law == "published" else args.qr_law, budget, size_b)
            extra["qrs_by_model"][m] = tuple(sorted({round(v, 4) for v in (lo, mid, hi) if v == v}))
            law_rows.append(dict(model=m, params_b=size_b, budget=budget, qr=mid, qr_low=lo, qr_high=hi))
        print("Q_r from Law 1 (" + ("seed 000's published fit" if args.qr_law == "published" else args.qr_law) + "):",
              file=sys.stderr)
        show(pd.DataFrame(law_rows), out=sys.stderr)
    kinds = tuple(names(args.units))
    vary = []
    for item in args.vary or []:
        key, eq, vals = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--vary takes KEY=V1,V2,... (a design-file key, e.g. sram_mb=32,64), got {item!r}")
        vary.append((key.strip(), tuple(floats(vals, f"--vary {key.strip()}"))))
    q = SizingQuestion(models=tuple(models), qrs=qrs, kinds=kinds, low=args.low, high=args.high,
                       area_mm2=checks.number(args.area, "--area", lo=0, lo_open=True),
                       power_w=None if args.power is None else checks.number(args.power, "--power", lo=0, lo_open=True),
                       base=args.base, step=args.step, batches=tuple(ints(args.batch, "-b/--batch")),
                       prompt=args.prompt, context=args.context, output_tokens=args.output_tokens,
                       objective=args.objective, rule=args.rule, attention=args.attention, max_tp=args.max_tp, vary=tuple(vary), extra=extra)

    def progress(i, n, name, lay):
        print(f"[{i}/{n}] {name} ({lay}) priced", file=sys.stderr)

    if args.objective == "goodput":
        q = replace(q, slo_ttft_s=checks.number(args.slo_ttft, "--slo-ttft", lo=0, lo_open=True),
                    slo_tpot_s=checks.number(args.slo_tpot, "--slo-tpot", lo=0, lo_open=True),
                    serve_requests=checks.integer(args.requests, "--requests", lo=10, hi=100_000))
    res = size(q, maps_by_model, progress=progress)
    for sets, why in res["skipped"]:
        print(f"note: design variant {', '.join(f'{k}={v:g}' for k, v in sets.items())} skipped: {why}", file=sys.stderr)
    col, _, what = OBJECTIVES[q.objective]
    best = res["best"]
    if best.empty:
        raise InputError("no split fits the model in memory at these batches; raise --max-tp or the base design's memory")
    shares = [f"share_{k}" for k in kinds]
    if q.objective == "goodput":
        print(f"highest request rate with 90 % of requests within TTFT {q.slo_ttft_s:g} s and TPOT {q.slo_tpot_s:g} s "
              f"({q.serve_requests} requests, prompt {q.prompt}, {q.output_tokens} output tokens), best of the "
              f"latency/energy front's and a quarter-step grid's designs, on {q.area_mm2:g} mm2 ({q.base}):")
        show(best[["model", "qr", "layout", *[k for k, _ in vary], *shares, "goodput_qps", "goodput_capped",
                   "goodput_qps_per_mm2", "simulations"]])
        _write_sizing(res, args.out)
        return 0
    view = best[["model", "qr", "batch", "layout", *[k for k, _ in vary], *shares, *[c for k in kinds for c in (f"{k}_lo", f"{k}_hi")],
                 "request_ms", "decode_ms", "prefill_ms", "request_j_per_token", "decode_j_per_token", "tok_s_per_mm2"]]
    print(f"optimal split of the tensor-array area ({', '.join(kinds)}) on {q.area_mm2:g} mm2 ({q.base}, "
          f"{best.power_budget_w.iloc[0]:g} W board budget); objective {q.objective}: {what}; prompt {q.prompt}, "
          f"{q.output_tokens} output tokens at context {q.context}; <kind>_lo/_hi: the share's range within "
          f"1 % of the optimum")
    show(view)
    _write_sizing(res, args.out)
    return 0


def _write_sizing(res: dict, out) -> None:
    if not out:
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res["points"].to_parquet(out / "points.parquet", index=False)
    for k in ("best", "front", "maps"):
        res[k].to_csv(out / f"{k}.csv", index=False)
    print(f"every design point in {out / 'points.parquet'}; best.csv, front.csv (Pareto: request latency vs "
          f"J/token), maps.csv in {out}")


def register(sub) -> None:
    def model_device_precision(s, devices="device name(s), comma-separated, or a YAML path"):
        s.add_argument("-m", "--model", required=True, help="bundled model name or path to a config.json")
        s.add_argument("-d", "--device", required=True, help=devices)
        s.add_argument("-p", "--precision", default=None, help="preset(s), comma-separated (see 'mpqsim presets'; "
                                                               "default bf16)")
        s.add_argument("--map", help="precision-map JSON (op name -> weight/act formats, KV format)")
        s.add_argument("--eager", action="store_true", help="eager kernel launches instead of CUDA graphs")
        s.add_argument("--engine", default="fused", help="how element-wise ops run: fused (vLLM-like kernels, "
                                                         "default) or eager (transformers eager)")
        s.add_argument("--kernel", default=None, metavar="CLASS=KERNEL",
                       help="GEMM kernel per operand class, comma-separated, e.g. w4a16=tinygemm,w8a8=cublas_rowwise "
                            "(see 'mpqsim gemm'); default: each device's")
        s.add_argument("--set", action="append", metavar="KEY=NUMBER",
                       help="override a device number, e.g. --set memory_bandwidth_tbs=4 --set peak_tflops.mxint4=8000")
        s.add_argument("--power-cap", type=float, default=None, metavar="W",
                       help="what-if board power limit in W (default: the device's TDP); the clock drops to respect it")
        s.add_argument("--tp", default=None, help="tensor-parallel degree per replica (or 'auto' in latency: every degree "
                                                  "that fits a node); -d 8xh100-sxm sets it from the count")
        s.add_argument("--pp", type=int, default=None, help="pipeline-parallel stages per replica (default 1)")
        s.add_argument("--ep", action="store_true", help="MoE: experts split whole over the tensor-parallel group")

    s = sub.add_parser("latency", help="prefill/decode latency and memory of a model on devices",
                       description="Price prefill and one decode step with the roofline cost model.")
    model_device_precision(s)
    s.add_argument("-b", "--batch", default="1", help="batch sizes, comma-separated (default 1)")
    s.add_argument("--prompt", type=int, default=1024, help="prompt tokens to prefill (default 1024)")
    s.add_argument("--context", type=int, default=1024, help="context length of the decode step (default 1024)")
    s.add_argument("--chunk", type=int, default=None, help="prefill in chunks of this many tokens")
    s.add_argument("--per-op", action="store_true", help="explain every op: shape, unit, bytes, bound, time")
    s.add_argument("--unfused-attention", action="store_true", help="materialise attention scores (no FlashAttention)")
    s.add_argument("--csv", help="also write the full table to this CSV file")
    s.set_defaults(func=cmd_latency)

    s = sub.add_parser("serve", help="simulate serving under load (SimPy): throughput, TTFT/TPOT, goodput",
                       description="Discrete-event simulation of LLM serving priced by the cost model.")
    model_device_precision(s, devices="device name or YAML path")
    s.add_argument("--qps", default="2", help="request rates, comma-separated (requests/s)")
    s.add_argument("--requests", type=int, default=1000, help="requests per run (default 1000)")
    s.add_argument("--prompt", type=int, default=512, help="prompt tokens (mean)")
    s.add_argument("--output", type=int, default=128, help="output tokens (mean)")
    s.add_argument("--length-dist", default="fixed", help="fixed, uniform or lognormal")
    s.add_argument("--prompt-spread", type=float, default=0.0, help="uniform: +- tokens; lognormal: CV")
    s.add_argument("--output-spread", type=float, default=0.0, help="uniform: +- tokens; lognormal: CV")
    s.add_argument("--arrival", default="poisson", help="poisson or gamma")
    s.add_argument("--cv", type=float, default=1.0, help="gamma arrivals: coefficient of variation")
    s.add_argument("--trace", help="CSV/JSONL with arrival, prompt, output columns (replaces --qps)")
    s.add_argument("--scheduler", default="vllm", help="vllm, sarathi or static")
    s.add_argument("--max-batch", type=int, default=128, help="max running sequences per replica")
    s.add_argument("--max-tokens", type=int, default=4096, help="max tokens per iteration")
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--router", default="round_robin", help="round_robin or least_outstanding")
    s.add_argument("--memory-margin", type=float, default=0.10, help="fraction of device memory left unused")
    s.add_argument("--cpu-overhead-ms", type=float, default=0.0, help="CPU overhead per iteration (ms)")
    s.add_argument("--slo-ttft", type=float, default=2.0, help="SLO on time to first token (s)")
    s.add_argument("--slo-tpot", type=float, default=0.1, help="SLO on time per output token (s)")
    s.add_argument("--find-max-qps", action="store_true", help="bisect for the highest rate meeting the SLO")
    s.add_argument("--attainment", type=float, default=0.9, help="with --find-max-qps: fraction meeting the SLO")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--csv", help="write the summary table to this CSV file")
    s.add_argument("--requests-csv", help="write the per-request table to this CSV file")
    s.add_argument("-o", "--out", help="study folder: every finished simulation is journalled there as it completes; "
                                       "re-run the same command to resume after an interruption")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("gemm", help="price one GEMM at several m: time, TFLOP/s, GB/s, speed-up vs bf16, kernel",
                       description="y[m x n] = x[m x k] . W[n x k]^T with the kernel-aware GEMM model.")
    s.add_argument("-d", "--device", required=True, help="device name or a YAML path")
    s.add_argument("-m", required=True, help="rows (tokens), comma-separated, e.g. 1,16,256,4096")
    s.add_argument("-n", type=int, required=True, help="output features (weight rows)")
    s.add_argument("-k", type=int, required=True, help="reduction depth (weight columns)")
    s.add_argument("-w", "--weight", default="bf16", help="weight format (default bf16), e.g. int4_g128, fp8_e4m3")
    s.add_argument("-a", "--act", default=None, help="activation format (default: the weight's if 16-bit, else bf16)")
    s.add_argument("--kernel", default=None, help="GEMM kernel (default: the device's for the formats); one of "
                                                  "cublas, cublas_rowwise, upcast, tinygemm, marlin, trt_weight_only")
    s.add_argument("--set", action="append", metavar="KEY=NUMBER", help="override a device number")
    s.add_argument("--power-cap", type=float, default=None, metavar="W", help="what-if board power limit in W")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_gemm)

    s = sub.add_parser("collective", help="time of an all-reduce, all-gather, reduce-scatter, send/recv or all-to-all",
                       description="Price one collective over a device's interconnect (latency + bandwidth model).")
    s.add_argument("collective", help="all_reduce, all_gather, reduce_scatter, send_recv or all_to_all")
    s.add_argument("-d", "--device", required=True, help="device name or a YAML path")
    s.add_argument("-n", type=int, required=True, help="devices taking part")
    s.add_argument("--bytes", required=True, help="buffer sizes per device in bytes, comma-separated (e.g. 2048,1e6,64e6)")
    s.add_argument("--per-node", type=int, default=None, help="devices per node (default: the device's scale-up domain)")
    s.add_argument("--oneshot", action="store_true", help="allow a custom one-shot all-reduce inside an NVLink domain "
                                                          "(vLLM / TensorRT-LLM); default NCCL's algorithms")
    s.add_argument("--set", action="append", metavar="KEY=NUMBER", help="override a device number")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_collective, power_cap=None)

    s = sub.add_parser("sweep", help="design-space sweep from a YAML spec (resumable Parquet table)",
                       description="Cross models, devices, precisions, batches, lengths, layouts and power caps.")
    s.add_argument("spec", help="sweep spec YAML (see sim/sweep.py)")
    s.add_argument("-o", "--out", required=True, help="output folder (parts/, results.parquet); re-run to resume")
    s.add_argument("--backend", default="inprocess", help="inprocess (default), process (a local process pool) or "
                                                          "ray (pip install 'mpqsim[ray]')")
    s.add_argument("--workers", type=int, default=None, help="processes for --backend process, CPUs of a local Ray "
                                                             "instance (default: all)")
    s.add_argument("--address", default=None, help="with --backend ray: the cluster (ray://HOST:10001 or auto); "
                                                   "default a local instance started for the sweep")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_sweep)

    s = sub.add_parser("size", help="how much of a chip should be low-precision: optimal unit split under an area budget",
                       description="Split a generated accelerator's tensor-array area between unit kinds for models "
                                   "and precision maps; the optimum, its flat region and the Pareto front.")
    s.add_argument("-m", "--model", default="llama-3.1-70b", help="model(s), comma-separated (e.g. llama-3.1-8b,llama-3.1-70b,llama-3.1-405b)")
    s.add_argument("--qr", default=None, help="quantization ratios, comma-separated (default 0.5,0.9,0.99)")
    s.add_argument("--qr-law", default=None, metavar="FITS|published",
                   help="Q_r from Law 1 for each model's size: a 'quant fit' fits.json, or 'published' (seed 000)")
    s.add_argument("--budget", type=float, default=0.1, help="with --qr-law: the delta-perplexity budget (default 0.1)")
    s.add_argument("--map", default=None, help="precision-map JSON(s) of the one model instead of --qr")
    s.add_argument("--rule", default="size", help="which ops go low for a Q_r: size (largest first, middle layers "
                                                  "before the ends) or transfer (a smaller model's searched map)")
    s.add_argument("--attention", default="high", help="attention matmuls (qk, av) and KV cache: high (default) or "
                                                       "low (the --low format; they hold no parameters, so Q_r "
                                                       "does not count them)")
    s.add_argument("--transfer-map", default=None, help="with --rule transfer: a quant search map of a smaller model")
    s.add_argument("--units", default="bf16,fp8,mxint4", help="unit kinds to split the tensor area between (first: "
                                                            "the high-precision one; default bf16,fp8,mxint4)")
    s.add_argument("--low", default="mxint4_32", help="low format of the map's low ops, weights and activations")
    s.add_argument("--high", default="bf16", help="format of the ops the map leaves high")
    s.add_argument("--area", type=float, default=800.0, help="die-area budget per device, mm2 (default 800)")
    s.add_argument("--power", type=float, default=None, help="board power budget per device, W (default: the base "
                                                             "design's derived TDP)")
    s.add_argument("--base", default="custom-mx", help="base design (bundled design name or design YAML)")
    s.add_argument("--step", type=float, default=0.05, help="split grid step (default 0.05)")
    s.add_argument("--vary", action="append", metavar="KEY=V1,V2", help="also search a design number (any key of "
                                                                      "the design file, e.g. sram_mb=32,64 or "
                                                                      "memory.stacks=4,6); repeatable")
    s.add_argument("-b", "--batch", default="1,64", help="batch sizes, comma-separated (default 1,64)")
    s.add_argument("--prompt", type=int, default=1024, help="prompt tokens (default 1024)")
    s.add_argument("--context", type=int, default=2048, help="decode context (default 2048)")
    s.add_argument("--output-tokens", type=int, default=256, help="output tokens per request (default 256)")
    s.add_argument("--objective", default="latency", help="latency (request), decode, ttft, energy (J/token), "
                                                          "tok_s_per_mm2, goodput (serving under --slo-*)")
    s.add_argument("--max-tp", type=int, default=None, help="most devices per replica (default: the design's domain)")
    s.add_argument("--slo-ttft", type=float, default=2.0, help="goodput objective: TTFT SLO, s (default 2)")
    s.add_argument("--slo-tpot", type=float, default=0.1, help="goodput objective: TPOT SLO, s (default 0.1)")
    s.add_argument("--requests", type=int, default=300, help="goodput objective: requests per simulated rate")
    s.add_argument("-o", "--out", default=None, help="folder for points.parquet, best.csv, front.csv, maps.csv")
    s.set_defaults(func=cmd_size)

    s = sub.add_parser("demo", help="run the built-in demonstration and write its report (no arguments needed)")
    s.add_argument("-o", "--out", default="mpqsim-report", help="folder for the report and its tables "
                                                                "(default ./mpqsim-report)")
    s.set_defaults(func=cmd_demo)
