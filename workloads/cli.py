"""``mpqsim models``."""

from __future__ import annotations

from mpqsim.cli import show, write_csv


def cmd_models(args) -> int:
    from workloads import models_table

    df = models_table()
    show(df, floatfmt="{:,.4g}")
    write_csv(df, args.csv)
    return 0


def register(sub) -> None:
    s = sub.add_parser("models", help="list bundled model configs")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_models)
