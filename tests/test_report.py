"""reports: tables -> a self-contained HTML report and its Markdown twin; rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpqsim import InputError
from reports import build_report, read_inputs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Small result tables of every kind a report reads, written as the commands write them."""
    from hwmodels import load_device
    from quant.precision import preset_map
    from sim.latency import latency_table, per_op_table
    from sim.serving import SLO, simulate, sustains
    from sim.sizing import SizingQuestion, size
    from sim.workload_gen import Lengths, synthetic
    from workloads import load_model

    d = tmp_path_factory.mktemp("tables")
    devs = [load_device(x) for x in ("h100-sxm", "a100-80gb")]
    maps = [preset_map(p) for p in ("bf16", "fp8", "w4a16")]
    lat = pd.concat([latency_table(load_model(m), devs, maps, [1, 8, 64], 512, 1024)
                     for m in ("llama-2-7b", "qwen1.5-1.8b")], ignore_index=True)
    lat.to_csv(d / "latency.csv", index=False)
    spec = load_model("llama-2-7b")
    per = pd.concat([per_op_table(spec, devs[0], pm, 8, 512, 1024).assign(model=spec.name, device=devs[0].name,
                                                                         precision=pm.name, batch=8) for pm in maps])
    per.to_csv(d / "per_op.csv", index=False)
    rows = []
    for q in (1, 4):
        reqs = synthetic(40, q, Lengths(256, what="prompt"), Lengths(32, what="output"), seed=0)
        p, s = simulate(spec, devs[0], maps[0], reqs, slo=SLO())
        rows.append(dict(model=spec.name, device=devs[0].name, slo_ttft_s=2.0, slo_tpot_s=0.1, precision="bf16", qps=q,
                         **s, **sustains(p, s)))
    pd.DataFrame(rows).to_csv(d / "serve.csv", index=False)
    res = size(SizingQuestion(models=("llama-3.1-8b",), qrs=(0.5, 0.9), step=0.25, batches=(1, 16)))
    (d / "size").mkdir()
    res["points"].to_parquet(d / "size" / "points.parquet", index=False)
    for k in ("best", "front", "maps"):
        res[k].to_csv(d / "size" / f"{k}.csv", index=False)
    return d


@pytest.fixture(scope="module")
def report(tables, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "report", str(tables / "latency.csv"),
                        str(tables / "per_op.csv"), str(tables / "serve.csv"), str(tables / "size"),
                        str(ROOT / "benchmarks" / "results" / "law1_fit"),
                        str(ROOT / "benchmarks" / "results" / "hw_search" / "hw-greedy"), "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_inputs_are_recognised_by_their_columns(tables):
    inp = read_inputs([tables / "latency.csv", tables / "per_op.csv", tables / "serve.csv", tables / "size"])
    assert set(inp.tables) == {"latency", "per_op", "serving", "sizing", "sizing_best"}
    assert len(inp.tables["sizing"]) == 1  # a sizing folder's front.csv is a subset of its points
    bad = tables / "bad.csv"
    pd.DataFrame(dict(a=[1], b=[2])).to_csv(bad, index=False)
    with pytest.raises(InputError, match="not a table mpqsim writes"):
        read_inputs([bad])
    with pytest.raises(InputError, match="not found"):
        read_inputs([tables / "nope.csv"])


def test_report_is_self_contained_and_has_every_figure(report):
    html = (report / "report.html").read_text()
    # no network: nothing loaded from elsewhere (the only URLs are data: URIs)
    assert not re.search(r"""(src|href)=['"](https?:|//)""", html)
    imgs = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", html)
    kinds = ("latency and tokens/s", "tokens/s at batch", "memory", "energy", "Roofline", "Serving", "Sizing", "Pareto",
             "Law 1", "Accuracy/cost front", "Q_r vs delta", "time and energy by part of the model")
    for k in kinds:
        assert any(k.lower() in t.lower() for t in imgs), (k, imgs)
    assert html.count("<figcaption>") == len(imgs) >= 10
    assert "Key findings" in html and "fastest" in html and "How this was made" in html
    assert "Versions:" in html and "Measured" in html and "Estimated" in html
    md = (report / "report.md").read_text()
    for name in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (report / name).is_file()
    assert len(re.findall(r"\]\((figures/[^)]+)\)", md)) == len(imgs)
    assert (report / "tables" / "latency.csv").is_file()


def test_report_bad_inputs_one_line(tmp_path):
    for argv, msg in ((["report", str(tmp_path / "nope"), "-o", str(tmp_path / "o")], "not found"),
                      (["report", str(tmp_path), "-o", str(tmp_path / "o")], "holds none of the result files")):
        r = subprocess.run([sys.executable, "-m", "mpqsim.cli", *argv], capture_output=True, text=True)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr


CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="headless Chromium absent (Debian packages chromium and "
                                                       "chromium-driver; .ci/run installs them)")
def test_report_renders_in_headless_chromium(report):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium absent (the test extra installs it)")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        drv.get((report / "report.html").as_uri())

        def images():  # (img elements, decoded ones) once the document is complete
            return drv.execute_script(
                "if (document.readyState !== 'complete') return [0, -1]; var im = Array.from(document.images); "
                "return [im.length, im.filter(i => i.complete && i.naturalWidth > 0).length];")

        def all_decoded(_):
            n, ok = images()
            return n >= 10 and ok == n

        # a loaded machine can hand the page back before its last figure is parsed: wait (up to 60 s)
        try:
            WebDriverWait(drv, 60, poll_frequency=0.5).until(all_decoded)
        except TimeoutException:
            pytest.fail(f"figures never all decoded: (img elements, decoded) = {images()}")
        errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        table = drv.find_elements(By.CSS_SELECTOR, "table.sortable")[0]
        heads = table.find_elements(By.TAG_NAME, "th")
        col = [h.text for h in heads].index("decode_ms")

        def column():
            return [float(r.find_elements(By.TAG_NAME, "td")[col].text.replace(",", ""))
                    for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        before = column()
        heads[col].click()
        asc = column()
        heads[col].click()
        desc = column()
        assert asc == sorted(before) and desc == sorted(before, reverse=True) and asc != before
        assert not [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        drv.quit()


def test_demo_without_torch_writes_the_report(tmp_path):
    """``mpqsim demo`` on the core install (no torch): every part, the report, its Markdown twin and its
    tables, and the line saying where the report is (the suite's one demo run: ~90 s; the demo
    imports nothing of torch, so a run with torch present would repeat it)."""
    probe = ("import sys\nfor m in ('torch', 'transformers', 'gguf', 'accelerate', 'safetensors', 'torchao'):\n"
             "    sys.modules[m] = None\nfrom mpqsim.cli import main\nsys.exit(main(['demo', '-o', sys.argv[1]]))\n")
    r = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "rep")], capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = tmp_path / "rep"
    assert f"report: {(rep / 'report.html').resolve()}" in r.stdout and (rep / "report.md").is_file()
    from reports.demo import DEMO_BATCHES, DEMO_DEVICES, DEMO_MODELS, DEMO_PRECISIONS

    lat = pd.read_csv(rep / "data" / "latency.csv")
    assert len(lat) == len(DEMO_MODELS) * len(DEMO_DEVICES) * (len(DEMO_PRECISIONS) + 1) * len(DEMO_BATCHES)
    assert set(lat.precision) == set(DEMO_PRECISIONS) | {"searched-qr0.9"}
    # the fewest devices that hold each setup: Llama-3.1-70B bf16 needs more than one H100 at batch 64
    r70 = lat[(lat.model == "llama-3.1-70b") & (lat.device == "h100-sxm") & (lat.precision == "bf16")]
    assert (r70.devices > 1).all() and r70.fits.all()
    assert (lat[(lat.model == "qwen1.5-0.5b") & (lat.batch == 1)].devices == 1).all()
    html = (rep / "report.html").read_text()
    assert html.count("<img") >= 15 and "Sizing, batch 64" in html and "Serving llama-2-7b" in html
    assert json.loads(json.dumps(sorted(p.name for p in (rep / "tables").glob("*.csv"))))


def test_findings_count_devices_when_layouts_differ():
    """A setup on four devices may be the fastest; the per-device finding says who makes the most of each."""
    import pandas as pd

    from reports.findings import latency_findings

    rows = [dict(model=f"m{i}", device=d, precision="bf16", layout=lay, devices=n, batch=b, fits=True,
                 decode_tok_s=tok * b, decode_j_per_token=1.0, total_gb=1.0, capacity_gb=80.0, decode_ms=1.0)
            for i in range(4) for b in (1, 64)
            for d, lay, n, tok in (("big", "tp4", 4, 300.0), ("small", "tp1", 1, 100.0))]
    out = latency_findings(pd.DataFrame(rows))
    assert any(x.startswith("**Fastest decode at batch 64**: big bf16 (tp4)") for x in out)
    assert any(x.startswith("**Most decode tokens/s per device at batch 64**: small bf16 for 4 of 4") for x in out)
