"""``mpqsim demo``: the product on built-in defaults, as a report (no torch, no network).

Prices Llama-2-7B, Llama-3.1-70B and the Qwen1.5 family (0.5B-72B; prompt 1024, decode at
context 2048, batch 1 / 16 / 64) on H100, A100, RTX A6000, B200 and the generated MX accelerator
(``custom-mx``) in bf16, fp8, w4a16 and mxint4 and a searched map (the bundled SmolLM2 map,
``quant/maps``, transferred to each model at Q_r 0.9), each setup on the fewest tensor-parallel
devices of one node that hold it; explains every op of Llama-2-7B at batch 16 on each device (rooflines); runs a
short serving study (Llama-2-7B on an H100, bf16 / fp8 / w4a16, six request rates); asks one sizing
question (which share of an 800 mm2 custom-mx die should be MXINT4 for Llama-3.1 8B / 70B / 405B at
Q_r 0.5 / 0.9 / 0.99); adds the bundled Law 1 measurements (``quant/data/law1``: three small
models' searches and their fit) and seed 000's published Law 1 for those sizes; and writes the report,
``report.html`` and ``report.md``, with every table as CSV, into the output folder.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import pandas as pd

DEMO_MODELS = ("llama-2-7b", "llama-3.1-70b", "qwen1.5-0.5b", "qwen1.5-1.8b", "qwen1.5-4b", "qwen1.5-7b",
               "qwen1.5-14b", "qwen1.5-32b", "qwen1.5-72b")
DEMO_DEVICES = ("h100-sxm", "a100-80gb", "rtx-a6000", "b200", "custom-mx")
DEMO_PRECISIONS = ("bf16", "fp8", "w4a16", "mxint4")
DEMO_BATCHES = (1, 16, 64)
DEMO_PROMPT, DEMO_CONTEXT = 1024, 2048
SEARCHED_MAP = "smollm2-135m-greedy-qr0.9.json"
SERVE_RATES = (4, 8, 12, 16, 24, 32)
SERVE_REQUESTS = 2000


def searched_map():
    from quant.precision import PrecisionMap

    return PrecisionMap.load(resources.files("quant") / "maps" / SEARCHED_MAP)


def model_maps(spec):
    """The demo's presets plus the bundled searched map transferred to ``spec`` at Q_r 0.9."""
    from quant.precision import preset_map
    from sim.sizing import ratio_map

    pmap, _ = ratio_map(spec, 0.9, "mxint4_32", "bf16", rule="transfer", transfer=searched_map())
    pmap.name = "searched-qr0.9"
    return [preset_map(p) for p in DEMO_PRECISIONS] + [pmap]


def _layouts(spec, device):
    """Tensor-parallel layouts the model can take within the device's node."""
    from sim.collectives import per_node
    from workloads.parallel import Layout, tp_degrees

    return [Layout(t) for t in tp_degrees(spec, per_node(device.interconnect))]


def latency_part(log):
    """Every (model, device, precision, batch) on the fewest tensor-parallel devices that hold it
    (the largest layout, marked fits False, where none does)."""
    from hwmodels import load_device
    from sim.latency import latency_table
    from workloads import load_model

    devices = [load_device(d) for d in DEMO_DEVICES]
    frames = []
    for m in DEMO_MODELS:
        spec = load_model(m)
        maps = model_maps(spec)
        for dev in devices:
            allt = pd.concat([latency_table(spec, [dev], maps, DEMO_BATCHES, DEMO_PROMPT, DEMO_CONTEXT,
                                            layout=None if lay.trivial else lay) for lay in _layouts(spec, dev)],
                             ignore_index=True)
            allt["_rank"] = allt.devices.where(allt.fits, 10_000 - allt.devices)  # smallest that fits, else largest
            pick = allt.sort_values("_rank", kind="stable").groupby(["precision", "batch"], sort=False).head(1)
            frames.append(pick.drop(columns="_rank").sort_index())
        log(f"priced {m} on {len(devices)} devices x {len(maps)} precisions x {len(DEMO_BATCHES)} batches")
    return pd.concat(frames, ignore_index=True)


def per_op_part():
    from hwmodels import load_device
    from sim.latency import per_op_table
    from workloads import load_model

    spec = load_model("llama-2-7b")
    frames = []
    for d in DEMO_DEVICES:
        dev = load_device(d)
        for pm in model_maps(spec):
            frames.append(per_op_table(spec, dev, pm, 16, DEMO_PROMPT, DEMO_CONTEXT)
                          .assign(model=spec.name, device=dev.name, precision=pm.name, batch=16))
    return pd.concat(frames, ignore_index=True)


SERVE_SLO = (1.0, 0.05)   # TTFT s, TPOT s
#: how close the served rate must stay to the offered one in the max-rate search: 5 %, not the CLI's
#: 2 %: with 500 requests a probe, the completion count's edge noise is ~2 % and would make the
#: bisection's verdicts (and so the answers) erratic
SERVE_SUSTAIN = 0.05


def _stream(spec, n):
    from sim.workload_gen import Lengths, synthetic

    def make(q):
        return synthetic(n, q, Lengths(512, "lognormal", 0.5, "prompt"), Lengths(128, "lognormal", 0.5, "output"),
                         seed=0, max_len=spec.max_positions)
    return make


def serving_part():
    """Llama-2-7B on an H100 at six rates (the curves), and the highest rate every device and
    precision of the demo sustains within the SLO (sim.serving.max_qps, 500 requests a probe)."""
    from hwmodels import load_device
    from quant.precision import preset_map
    from sim.serving import SLO, ServingConfig, max_qps, simulate, sustains
    from workloads import load_model

    spec, slo = load_model("llama-2-7b"), SLO(*SERVE_SLO)
    dev = load_device("h100-sxm")
    rows = []
    for p in ("bf16", "fp8", "w4a16"):
        for q in SERVE_RATES:
            per, summ = simulate(spec, dev, preset_map(p), _stream(spec, SERVE_REQUESTS)(q), ServingConfig(), slo)
            rows.append(dict(model=spec.name, device=dev.name, replicas=1, slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s,
                             precision=p, qps=q, **summ, **sustains(per, summ)))
    best = []
    for d in DEMO_DEVICES:
        dv = load_device(d)
        for p in DEMO_PRECISIONS:
            res = max_qps(spec, dv, preset_map(p), _stream(spec, 500), ServingConfig(), slo, attainment=0.9, lo=0.5,
                          hi=16.0, tol=0.1, sustain=SERVE_SUSTAIN)
            best.append(dict(model=spec.name, device=dv.name, precision=p, max_qps=res.qps, capped=res.capped,
                             slo_ttft_s=slo.ttft_s, slo_tpot_s=slo.tpot_s, probes=len(res.probes)))
    return pd.DataFrame(rows), pd.DataFrame(best)


def sizing_part():
    from sim.sizing import SizingQuestion, qr_from_law, size, spec_params
    from workloads import load_model

    q = SizingQuestion(models=("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"), qrs=(0.5, 0.9, 0.99), step=0.1)
    res = size(q)
    law = []
    for m in q.models:
        sb = spec_params(load_model(m)) / 1e9
        for b in (0.05, 0.10, 0.20):
            law.append(dict(model=m, size_b=sb, budget=b, qr_max=qr_from_law(None, b, sb)[0],
                            source="seed 000 published Law 1 (prediction, not a measurement)"))
    return res, pd.DataFrame(law), q


def run_demo(out: Path, log=print) -> Path:
    """Run every part, write their tables into ``out`` and build the report there; returns its path."""
    from reports import build_report
    from reports.inputs import Inputs, read_inputs

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    data.mkdir(exist_ok=True)
    lat = latency_part(log)
    lat.to_csv(data / "latency.csv", index=False)
    per = per_op_part()
    per.to_csv(data / "per_op.csv", index=False)
    log("explained every op of llama-2-7b at batch 16 on each device")
    srv, smax = serving_part()
    srv.to_csv(data / "serving.csv", index=False)
    smax.to_csv(data / "serving_max_qps.csv", index=False)
    log(f"simulated serving: llama-2-7b on h100-sxm, 3 precisions x {len(SERVE_RATES)} request rates x {SERVE_REQUESTS} "
        f"requests; the highest rate within the SLO on {len(DEMO_DEVICES)} devices x {len(DEMO_PRECISIONS)} precisions "
        f"({int(smax.probes.sum())} simulations)")
    res, law, q = sizing_part()
    res["points"].to_parquet(data / "sizing_points.parquet", index=False)
    res["best"].to_csv(data / "sizing_best.csv", index=False)
    law.to_csv(data / "law1_published.csv", index=False)
    log(f"sized the tensor area of a {q.area_mm2:g} mm2 {q.base} die for {', '.join(q.models)} at Q_r "
        f"{', '.join(map(str, q.qrs))} ({len(res['points']):,} design points)")
    measured = read_inputs(sorted(str(p) for p in (resources.files("quant") / "data" / "law1").iterdir()
                                  if p.name.endswith((".csv", ".json"))))
    log(f"read the bundled Law 1 measurements ({', '.join(sorted(measured.get('search').model.unique()))})")
    inp = Inputs(tables={"latency": [(lat, str(data / "latency.csv"))], "per_op": [(per, str(data / "per_op.csv"))],
                         "serving": [(srv, str(data / "serving.csv"))],
                         "serving_max": [(smax, str(data / "serving_max_qps.csv"))],
                         "sizing_best": [(res["best"], str(data / "sizing_best.csv"))],
                         "sizing": [(res["points"], str(data / "sizing_points.parquet"))],
                         "law_points": measured.tables["law_points"] + [(law, str(data / "law1_published.csv"))],
                         "search": measured.tables["search"]}, fits=measured.fits)
    intro = (f"Built-in defaults, no measurements taken: {len(DEMO_MODELS)} bundled models on "
             f"{', '.join(DEMO_DEVICES)} at {', '.join(DEMO_PRECISIONS)} and a searched MXINT4 map (SmolLM2's, "
             f"transferred at Q_r 0.9); prompt {DEMO_PROMPT}, decode at context {DEMO_CONTEXT}; each setup on "
             "the fewest tensor-parallel devices of one node that hold it (tpN: N devices).")
    path = build_report(inp, out, title="mpqsim demo: mixed-precision inference across devices", intro=intro,
                        commands=["mpqsim demo -o " + str(out)])
    log(f"report: {path.resolve()} ({time.perf_counter() - t0:.0f} s)")
    return path


__all__ = ["run_demo", "DEMO_MODELS", "DEMO_DEVICES", "DEMO_PRECISIONS", "DEMO_BATCHES"]
