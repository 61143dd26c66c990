"""``mpqsim devices`` (``--area``: die area by part; ``--power``: the energy and power model)."""

from __future__ import annotations


def cmd_devices(args) -> int:
    from hwmodels.listing import area_table, devices_table, power_table
    from mpqsim import checks
    from mpqsim.cli import names, show, write_csv

    checks.output_file(args.csv, "--csv")
    extra = names(args.device or "")
    if args.area and args.power:
        from mpqsim import InputError

        raise InputError("give one of --area or --power")
    df = (area_table if args.area else power_table if args.power else devices_table)(extra)
    show(df, floatfmt="{:,.4g}")
    if args.area:
        print("note: area only where a device is generated from a design (hwmodels/generator.py); "
              "a GPU file lists its datasheet numbers, not its die", flush=True)
    write_csv(df, args.csv)
    return 0


def register(sub) -> None:
    s = sub.add_parser("devices", help="list bundled devices: peaks, power, area",
                       description="The bundled devices (and any device or design YAML given with -d).")
    s.add_argument("-d", "--device", help="also these devices or design files (comma-separated names or paths)")
    s.add_argument("--area", action="store_true", help="die area by part (mm2) of generated accelerators")
    s.add_argument("--power", action="store_true", help="the energy and power model of each device")
    s.add_argument("--csv", help="also write the table to this CSV file")
    s.set_defaults(func=cmd_devices)
