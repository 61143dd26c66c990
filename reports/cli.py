"""``mpqsim report``: result tables -> report.html (self-contained) and report.md."""

from __future__ import annotations

import sys


def cmd_report(args) -> int:
    from mpqsim import checks
    from reports import build_report, read_inputs

    checks.output_dir(args.out, "-o/--out")
    inp = read_inputs(args.results)
    print(f"report from {sum(len(v) for v in inp.tables.values())} table(s)"
          f"{' and ' + str(len(inp.fits)) + ' fit(s)' if inp.fits else ''}: "
          + ", ".join(sorted(inp.tables)), file=sys.stderr)
    path = build_report(inp, args.out, title=args.title, commands=["mpqsim " + " ".join(sys.argv[1:])])
    print(f"wrote {path} (self-contained) and {path.with_suffix('.md')} (figures/, tables/ beside it)")
    return 0


def register(sub) -> None:
    s = sub.add_parser("report", help="design-space report (HTML + Markdown) from result tables",
                       description="Turn the tables other commands write (latency/per-op/serve CSVs, sweep and "
                                   "size folders, quant search and fit folders) into one report.")
    s.add_argument("results", nargs="+", help="result files (.csv, .parquet, fits.json) or folders")
    s.add_argument("-o", "--out", required=True, help="output folder (report.html, report.md, figures/, tables/)")
    s.add_argument("--title", default="mpqsim design-space report", help="the report's title")
    s.set_defaults(func=cmd_report)
