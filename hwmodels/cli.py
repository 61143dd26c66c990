"""``mpqsim devices``."""

from __future__ import annotations

from mpqsim.cli import show, write_csv


def cmd_devices(args) -> int:
    from hwmodels.listing import devices_table

    df = devices_table()
    show(df, floatfmt="{:,.4g}")
    write_csv(df, args.csv)
    return 0


def register(sub) -> None:
    s = sub.add_parser("devices", help="list bundled devices and their peaks")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_devices)
