"""A report from result tables: one self-contained HTML file (figures embedded as PNG data, a
small inline script that sorts tables; nothing fetched from the network) and a Markdown twin with
the figures beside it (``figures/*.png``) and every table as CSV (``tables/*.csv``)."""

from __future__ import annotations

import base64
import html
import io
import platform
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

from reports import figures as F
from reports import findings as K
from reports.inputs import Inputs

MAX_ROWS = 300
TABLE_COLUMNS = {
    "latency": ["model", "device", "layout", "devices", "precision", "batch", "prefill_ms", "decode_ms", "decode_tok_s",
                "decode_j_per_token", "decode_power_w", "power_cap_w", "weights_gb", "kv_gb", "total_gb",
                "capacity_gb", "fits", "gemm_kernels", "calibrated"],
    "serving_max": ["model", "device", "precision", "max_qps", "capped", "slo_ttft_s", "slo_tpot_s", "probes"],
    "serving": ["model", "device", "precision", "qps", "requests_per_s", "output_tokens_per_s", "ttft_p50_s",
                "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "slo_attainment", "sustained", "energy_per_output_token_j",
                "power_w"],
    "sizing_best": ["model", "qr", "batch", "layout", "share_*", "*_lo", "*_hi", "request_ms", "decode_ms", "prefill_ms",
                    "request_j_per_token", "tok_s_per_mm2", "area_mm2", "power_budget_w"],
    "sizing": ["model", "precision", "batch", "layout", "share_*", "request_ms", "request_j_per_token", "area_mm2"],
    "search": ["model", "searcher", "target_qr", "target_cost", "qr", "flop_ratio", "ppl", "delta", "cost"],
    "search_front": ["searcher", "target", "qr", "flop_ratio", "delta", "cost", "on_front"],
    "sweep": ["model", "device", "precision", "batch", "layout", "prefill_ms", "decode_ms", "decode_j_per_token",
              "total_gb", "fits"],
    "per_op": ["model", "device", "precision", "batch", "phase", "op", "unit", "kernel", "M", "N", "K", "bound",
               "time_us", "total_us", "share"],
    "law_points": ["model", "size_b", "budget", "qr_max"],
}
TITLES = {"latency": "Latency, throughput, memory and energy", "per_op": "Per-op rooflines and where the time and energy go", "serving": "Serving under load",
          "serving_max": "Request rate within the SLO",
          "sizing_best": "Sizing: the optimal unit split", "sizing": "Sizing: every design point",
          "search": "Precision search results", "search_front": "Accuracy/cost front of evaluated maps",
          "sweep": "Sweep", "law_points": "Law 1 points"}

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.dir !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = asc ? 'asc' : 'desc';
    var rows = Array.prototype.slice.call(body.rows);
    function key(r) {
      var t = r.cells[i].textContent.trim(), n = parseFloat(t.replace(/,/g, ''));
      return isNaN(n) ? t.toLowerCase() : n;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.findings li { margin: 0.4em 0; } figure { margin: 1.5em 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
table.sortable { border-collapse: collapse; font-size: 0.8em; margin: 1em 0; display: block; overflow-x: auto; }
table.sortable th { cursor: pointer; background: #eee; position: sticky; top: 0; }
table.sortable th[data-dir=asc]::after { content: " \\25B2"; } table.sortable th[data-dir=desc]::after { content: " \\25BC"; }
table.sortable td, table.sortable th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
.note { font-size: 0.85em; color: #666; } code { background: #f4f4f4; padding: 0 3px; }
"""


def _columns(df: pd.DataFrame, wanted) -> list[str]:
    out = []
    for w in wanted:
        if "*" in w:
            pre, suf = w.split("*")
            out += [c for c in df.columns if c.startswith(pre) and c.endswith(suf) and c not in out]
        elif w in df.columns and w not in out:
            out.append(w)
    return out or list(df.columns)


def _fmt(v):
    if isinstance(v, float):
        return "" if v != v else (f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}")
    return str(v)


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _versions() -> str:
    pk = []
    for p in ("mpqsim", "numpy", "pandas", "matplotlib", "numba", "simpy"):
        try:
            pk.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            pass
    return f"Python {platform.python_version()}; " + ", ".join(pk)


def collect_figures(inp: Inputs) -> list[tuple[str, F.Figure]]:
    """(section, figure) in report order."""
    out = []
    lat, per, srv = inp.get("latency"), inp.get("per_op"), inp.get("serving")
    pts, best, sw = inp.get("sizing"), inp.get("sizing_best"), inp.get("sweep")
    if lat is not None:
        models = list(dict.fromkeys(lat.model))
        if len(models) > 1:
            out += [("latency", f) for f in F.overview(lat)]
        detail = lat[lat.model.isin(models[:2])]  # per-model detail for the first two; the overview has all
        out += [("latency", f) for f in F.latency_vs_batch(detail) + F.memory(detail) + F.energy(detail)]
    if per is not None:
        out += [("per_op", f) for f in F.roofline(per) + F.op_breakdown(per)]
    if srv is not None:
        out += [("serving", f) for f in F.serving(srv)]
    if inp.get("serving_max") is not None:
        out += [("serving_max", f) for f in F.serving_max(inp.get("serving_max"))]
    if sw is not None:
        out += [("sweep", f) for f in F.pareto_sweep(sw)]
    if best is not None:
        out += [("sizing_best", f) for f in F.sizing_answer(best)]
    if pts is not None and "design" in pts:
        out += [("sizing", f) for f in F.pareto_sizing(pts, None)]
    if inp.get("search_front") is not None:
        out += [("search_front", f) for f in F.search_front(inp.get("search_front"))]
    if inp.get("search") is not None or inp.fits or inp.get("law_points") is not None:
        out += [("search", f) for f in F.scaling(inp.get("search"), inp.fits, inp.get("law_points"))]
    return out


def key_findings(inp: Inputs) -> list[str]:
    out = []
    if inp.get("latency") is not None:
        out += K.latency_findings(inp.get("latency"))
    if inp.get("serving_max") is not None:
        out += K.serving_max_findings(inp.get("serving_max"))
    elif inp.get("serving") is not None:
        out += K.serving_findings(inp.get("serving"))
    if inp.get("sizing_best") is not None:
        out += K.sizing_findings(inp.get("sizing_best"))
    out += K.scaling_findings(inp.fits)
    return out


PROVENANCE = ("**Measured**: the calibration data under benchmarks/data and benchmarks/results/measured (H100 GEMMs in "
              "six precisions, per-op fp16 on A100/H100/A40, H100 board power, NCCL on A100 systems). "
              "**Calibrated**: GEMM kernel constants per architecture family (the `calibrated` column says whether "
              "a row's kernels were fitted on its device's architecture), power constants on the H100, collective "
              "constants on A100 NVLink. **Estimated**: everything else: devices without calibration data take "
              "their family's constants scaled by datasheet numbers; generated accelerators (areas, peaks, energies) "
              "are LLMCompass-style estimates; energies of GPUs other than the H100 are scaled from their TDP.")


def build_report(inp: Inputs, out_dir, title: str = "mpqsim design-space report", commands=(), intro: str = "",
                 extra_findings=()) -> Path:
    """Write ``out_dir/report.html`` (self-contained) and ``out_dir/report.md`` (+ figures/, tables/)."""
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    for old in list((out / "figures").glob("*.png")) + list((out / "tables").glob("*.csv")):  # a previous report's
        old.unlink()
    figs = collect_figures(inp)
    finds = list(extra_findings) + key_findings(inp)
    sections: dict[str, list] = {}
    for sec, f in figs:
        sections.setdefault(sec, []).append(f)
    order = [k for k in TITLES if k in sections or inp.get(k) is not None]
    h = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
         "<link rel='icon' href='data:,'>", f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
         f"<p class='note'>generated {time.strftime('%Y-%m-%d %H:%M')} by mpqsim</p>"]
    md = [f"# {title}", "", f"_generated {time.strftime('%Y-%m-%d %H:%M')} by mpqsim_", ""]
    if intro:
        h.append(f"<p>{html.escape(intro)}</p>")
        md += [intro, ""]
    h.append("<h2>Key findings</h2><ul class='findings'>")
    md += ["## Key findings", ""]
    for s in finds:
        h.append("<li>" + _md_inline(s) + "</li>")
        md.append(f"- {s}")
    h.append("</ul>")
    md.append("")
    n = 0
    for kind in order:
        h.append(f"<h2>{html.escape(TITLES[kind])}</h2>")
        md += [f"## {TITLES[kind]}", ""]
        for f in sections.get(kind, []):
            n += 1
            png = _png(f.fig)
            name = f"{n:02d}_{_safe(f.name)}.png"
            (out / "figures" / name).write_bytes(png)
            h.append(f"<figure><img alt='{html.escape(f.title)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'><figcaption><b>Figure {n}. {html.escape(f.title)}.</b> "
                     f"{html.escape(f.caption)}</figcaption></figure>")
            md += [f"![Figure {n}. {f.title}](figures/{name})", "", f"*Figure {n}. {f.title}.* {f.caption}", ""]
        df = inp.get(kind)
        if df is not None and kind != "per_op":
            cols = _columns(df, TABLE_COLUMNS.get(kind, df.columns))
            t = df[cols]
            t.to_csv(out / "tables" / f"{kind}.csv", index=False)
            shown = t.head(MAX_ROWS)
            more = f" (first {MAX_ROWS} of {len(t):,} rows)" if len(t) > MAX_ROWS else ""
            h.append(f"<p class='note'>Click a column header to sort{more}; the whole table: "
                     f"<code>tables/{kind}.csv</code>.</p>" + _html_table(shown))
            md += [shown.head(60).to_markdown(index=False, floatfmt=",.4g"), "",
                   f"_{'first 60 rows; ' if len(t) > 60 else ''}the whole table: tables/{kind}.csv_", ""]
        elif df is not None:
            df[_columns(df, TABLE_COLUMNS["per_op"])].to_csv(out / "tables" / "per_op.csv", index=False)
            h.append("<p class='note'>Per-op detail: <code>tables/per_op.csv</code>.</p>")
            md += ["_per-op detail: tables/per_op.csv_", ""]
    h.append("<h2>How this was made</h2>")
    md += ["## How this was made", ""]
    if commands:
        h.append("<p>Commands:</p><pre>" + html.escape("\n".join(commands)) + "</pre>")
        md += ["Commands:", "", "```", *commands, "```", ""]
    srcs = "".join(f"<li>{html.escape(k)}: <code>{html.escape(s)}</code></li>" for k, s in inp.sources)
    h.append(f"<p>Inputs:</p><ul>{srcs}</ul>")
    md += ["Inputs:", ""] + [f"- {k}: `{s}`" for k, s in inp.sources] + [""]
    h.append(f"<p>Data sources: {_md_inline(PROVENANCE)}</p><p class='note'>Versions: {html.escape(_versions())}</p>")
    md += [f"Data sources: {PROVENANCE}", "", f"Versions: {_versions()}", ""]
    h.append(f"<script>{SORT_JS}</script></body></html>")
    (out / "report.html").write_text("\n".join(h))
    (out / "report.md").write_text("\n".join(md))
    return out / "report.html"


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in s)


def _md_inline(s: str) -> str:
    """**bold** and `code` of a finding, as HTML (the rest escaped)."""
    import re

    t = html.escape(s)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


__all__ = ["build_report", "collect_figures", "key_findings"]
