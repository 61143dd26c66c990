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

    s = sub.add_parser("latency", help="prefill/decode latency and memory of a model on devices",
                       description="Price prefill and one decode step with the roofline cost model.")
    s.add_argument("-m", "--model", required=True, help="bundled model name or path to a config.json")
    s.add_argument("-d", "--device", required=True, help="device name(s), comma-separated, or a YAML path")
    s.add_argument("-b", "--batch", default="1", help="batch sizes, comma-separated (default 1)")
    s.add_argument("--prompt", type=int, default=1024, help="prompt tokens to prefill (default 1024)")
    s.add_argument("--context", type=int, default=1024, help="context length of the decode step (default 1024)")
    s.add_argument("--chunk", type=int, default=None, help="prefill in chunks of this many tokens")
    s.add_argument("-p", "--precision", default=None, help="preset(s), comma-separated (see 'mpqsim presets')")
    s.add_argument("--map", help="precision-map JSON (op name -> weight/act formats, KV format)")
    s.add_argument("--per-op", action="store_true", help="explain every op: shape, unit, bytes, bound, time")
    s.add_argument("--eager", action="store_true", help="eager kernel launches instead of CUDA graphs")
    s.add_argument("--unfused-attention", action="store_true", help="materialise attention scores (no FlashAttention)")
    s.add_argument("--set", action="append", metavar="KEY=NUMBER",
                   help="override a device number, e.g. --set memory_bandwidth_tbs=4 --set peak_tflops.mxint4=8000")
    s.add_argument("--csv", help="also write the full table to this CSV file")
    s.set_defaults(func=cmd_latency)

    s = sub.add_parser("demo", help="run the built-in demonstration (no arguments needed)")
    s.add_argument("-o", "--out", default="mpqsim-demo", help="folder for the demo's CSV files")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "precision", None) is None and getattr(args, "map", None) is None \
                and args.command == "latency":
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
