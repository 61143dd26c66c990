"""The ``mpqsim`` command line: a small core; each package adds its own verbs.

Every package with commands has a ``cli`` module with ``register(sub)``, which adds its
subcommands to the ``argparse`` sub-parser collection ``sub`` (each with ``set_defaults(func=...)``);
:data:`COMMAND_MODULES` lists them in the order ``mpqsim --help`` shows them. Commands are thin
calls into the library; the helpers here parse lists, overrides and write tables.

Bad input prints one line ``mpqsim: error: ...`` naming the problem and the valid choices, and
exits with status 2 (argparse usage errors included).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from mpqsim import InputError, __version__

#: Modules whose ``register(sub)`` adds commands, in help order.
COMMAND_MODULES = ("workloads.cli", "hwmodels.cli", "quant.cli", "sim.cli", "reports.cli")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message):  # noqa: D102
        raise InputError(f"{message} (see '{self.prog} --help')")


def floats(text: str, what: str) -> list[float]:
    """Comma-separated finite numbers (at least one)."""
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not vals:
        raise InputError(f"{what} is empty; give comma-separated numbers")
    bad = [v for v in vals if v != v or v in (float("inf"), float("-inf"))]
    if bad:
        raise InputError(f"{what} must be finite numbers, got {bad[0]}")
    return vals


def ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise InputError(f"{what} is empty")
    return vals


def names(text: str) -> list[str]:
    """Comma-separated names; commas inside [...] (a design's changes, ``custom-mx[cores=96,sram_mb=32]``) stay."""
    import re

    return [x.strip() for x in re.split(r",(?![^\[]*\])", str(text)) if x.strip()]


def overrides(items) -> dict:
    """``--set KEY=NUMBER`` items -> {key: number} (the keys are checked by the device loader)."""
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep:
            raise InputError(f"--set expects KEY=NUMBER (e.g. peak_tflops.mxint4=8000), got {item!r}")
        if key.strip() in out:
            raise InputError(f"--set {key.strip()} given twice")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise InputError(f"--set {key}: {val!r} is not a number") from None
    return out


def show(df, out=None, floatfmt: str = "{:,.3f}") -> None:
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_columns", 60, "display.max_rows", 5000,
                           "display.max_colwidth", 60):
        print(df.to_string(index=False, float_format=floatfmt.format), file=out or sys.stdout)


def write_csv(df, path) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(path, index=False)
        print(f"wrote {path}", file=sys.stderr)


def add_listing(sub, name: str, help: str, table, floatfmt: str = "{:,.4g}") -> None:
    """A verb that prints ``table()`` (a DataFrame) and can write it to ``--csv``."""
    def cmd(args) -> int:
        from mpqsim import checks

        checks.output_file(args.csv, "--csv")
        df = table()
        show(df, floatfmt=floatfmt)
        write_csv(df, args.csv)
        return 0

    s = sub.add_parser(name, help=help)
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="mpqsim", description="Hardware-aware simulator for mixed-precision LLM inference.")
    p.add_argument("--version", action="version", version=f"mpqsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).register(sub)
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as e:
        print(f"mpqsim: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file or device problem the checks could not foresee (disk full, permissions)
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        print(f"mpqsim: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print("mpqsim: error: out of memory; ask for a smaller problem (fewer requests, batches or configurations)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpqsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
