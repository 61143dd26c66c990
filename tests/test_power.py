"""Energy, the power cap and the accelerator generator (issue 17)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hwmodels import load_device
from hwmodels.power import calibration, power_model
from mpqsim import InputError
from quant.precision import preset_map
from sim.costmodel import assign, lower, price
from sim.gemm import price_gemm
from workloads import load_model

DEVICES = ["h100-sxm", "h200", "b200", "a100-80gb", "rtx-a6000", "mi300x", "custom-mx", "h100-like"]


def _priced(device, prec="bf16", batch=(1, 8, 64), q=(1, 2048), over=None, model="llama-2-7b"):
    dev = load_device(device, over)
    lw = lower(assign(load_model(model), preset_map(prec)), [dev])
    b, qq = np.meshgrid(np.asarray(batch, float), np.asarray(q, float))
    return dev, price(lw, device=0, batch=b.ravel(), q=qq.ravel(), past=np.where(qq.ravel() == 1, 1023, 0),
                      detail=True)


@pytest.mark.parametrize("device", DEVICES)
def test_energy_is_conserved(device):
    """Per-op energies (x repeat) sum to the configuration's total, and each is the sum of its parts."""
    _, ct = _priced(device)
    d, rep = ct.detail, ct.repeat
    for f in ("energy", "e_compute", "e_dram", "e_onchip", "e_static", "time"):
        np.testing.assert_allclose((d[f] * rep).sum(1), ct[f], rtol=1e-12)
    np.testing.assert_allclose(d["energy"], d["e_compute"] + d["e_dram"] + d["e_onchip"] + d["e_static"], rtol=1e-12)
    assert (d["e_compute"] >= 0).all() and (d["e_dram"] >= 0).all() and (ct["energy"] > 0).all()


def test_energy_monotone_in_flops_and_bytes():
    # more rows: more FLOPs and more activation bytes -> more energy
    e = price_gemm("h100-sxm", [1, 2, 8, 64, 512, 4096, 16384], 8192, 8192).energy_j
    assert np.all(np.diff(e) > 0)
    # the same FLOPs with more weight bytes (bf16 vs fp8 weights, weight-only on the same unit) cost more
    a = price_gemm("h100-sxm", 1, 8192, 8192, "bf16").energy_j
    b = price_gemm("h100-sxm", 1, 8192, 8192, "int4_g128", "bf16", kernel="marlin").energy_j
    assert a > b
    # a longer context (more KV bytes) costs more energy per decode step
    _, lo = _priced("h100-sxm", batch=(8,), q=(1,))
    dev = load_device("h100-sxm")
    lw = lower(assign(load_model("llama-2-7b"), preset_map("bf16")), [dev])
    hi = price(lw, device=0, batch=8, q=1, past=4095)
    assert hi["energy"][0] > lo["energy"][0] and hi["bytes_kv"][0] > lo["bytes_kv"][0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cap", [None, 0.5])
def test_power_within_cap_and_above_idle(device, cap):
    dev0 = load_device(device)
    over = {"power_cap_w": round(max(cap * dev0.tdp_w, power_model(dev0).static_w + 20), 1)} if cap else None
    dev, ct = _priced(device, over=over)
    p = power_model(dev)
    d = ct.detail
    live = d["time"] > 0
    power = np.where(live, d["energy"] / np.where(live, d["time"], 1), 0)
    assert power[live].max() <= p.cap_w * (1 + 1e-9)
    assert power[live].min() >= p.idle_w and power[live].min() >= p.static_w * (1 - 1e-12)
    clock = np.where(live, d["clock_time"] / np.where(live, d["time"], 1), 0)
    top = p.s_max * p.peak_clock_hz
    # the clock drops only where the op's power reached the cap
    dropped = live & (clock < top * (1 - 1e-9))
    assert np.allclose(power[dropped], p.cap_w, rtol=1e-6)
    assert (clock[live] >= p.s_min * p.peak_clock_hz * (1 - 1e-12)).all()


def test_sustained_h100_gemm_matches_the_power_microbenchmark():
    """The measured 8192^3 GEMMs sit at 700 W with the clock at 1350 (bf16) / 1395 (fp8) / 1605 (int8)
    MHz; the energies were fitted on these phases, the throughput comes from the GEMM time model."""
    for (w, kern, out), (mhz, tflops) in {("bf16", "cublas", "bf16"): (1350, 667.2),
                                          ("fp8_e4m3", "cublas_fp8", "bf16"): (1395, 1135.2),
                                          ("int8_tens", "cublas_int8", "fp32"): (1605, 856.7)}.items():
        c = price_gemm("h100-sxm", 8192, 8192, 8192, w, w, kernel=kern, out_fmt=out)
        assert c.power_w[0] == pytest.approx(700, rel=1e-6)
        assert c.clock_mhz[0] == pytest.approx(mhz, rel=0.08)
        assert c.tflops[0] == pytest.approx(tflops, rel=0.10)
    # a memory-bound GEMV is under the cap and runs at the boost clock
    g = price_gemm("h100-sxm", 1, 8192, 8192)
    assert g.clock_mhz[0] == pytest.approx(1980) and 136.4 < g.power_w[0] < 700


def test_power_cap_what_if_slows_compute_more_than_memory():
    full = price_gemm("h100-sxm", [1, 16384], 8192, 8192)
    low = price_gemm(load_device("h100-sxm", {"power_cap_w": 400}), [1, 16384], 8192, 8192)
    assert (low.power_w <= 400 + 1e-6).all() and (low.clock_mhz <= full.clock_mhz).all()
    slow = low.time_s / full.time_s
    assert slow[1] > 1.3 and slow[0] < slow[1]  # the compute-bound GEMM throttles more than the GEMV
    # memory traffic alone above the cap: the device idles between bursts (time stretches), power stays at the cap
    tiny = price_gemm(load_device("h100-sxm", {"power_cap_w": 200}), 1, 8192, 8192)
    assert tiny.power_w[0] == pytest.approx(200, rel=1e-6) and tiny.time_s[0] > full.time_s[0] * 1.5


def test_power_cap_below_static_power_is_refused():
    with pytest.raises(InputError, match="not above"):
        power_model(load_device("h100-sxm", {"power_cap_w": 100}))
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "latency", "-m", "llama-2-7b", "-d", "h100-sxm",
                        "--power-cap", "50"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "static power" in r.stderr


def test_latency_reports_energy_power_and_clock(capsys):
    from sim.latency import latency_table

    t = latency_table(load_model("llama-2-7b"), [load_device("h100-sxm")], [preset_map("bf16")], [1, 64], 2048, 2048)
    assert (t.decode_j_per_token > 0).all() and (t.prefill_j_per_token > 0).all()
    assert t.decode_j_per_token.iloc[0] > t.decode_j_per_token.iloc[1]  # batching amortises the weights
    assert (t.prefill_power_w <= 700 + 1e-6).all() and (t.decode_power_w >= 136.4).all()
    assert t.prefill_clock_mhz.iloc[0] < t.decode_clock_mhz.iloc[0] <= 1980 + 1e-9
    # energy / time = power, energy per token x tokens = the phase's energy
    np.testing.assert_allclose(t.decode_j_per_token * t.batch / (t.decode_ms / 1e3), t.decode_power_w)


def test_per_op_energy_sums_to_the_phase():
    from sim.latency import per_op_table

    spec, dev = load_model("llama-2-7b"), load_device("h100-sxm")
    df = per_op_table(spec, dev, preset_map("fp8"), 4, 512, 512)
    from sim.latency import latency_table

    t = latency_table(spec, [dev], [preset_map("fp8")], [4], 512, 512)
    dec = df[df.phase == "decode"]
    assert dec.total_energy_mj.sum() / 1e3 == pytest.approx(float(t.decode_j_per_token.iloc[0]) * 4, rel=1e-9)
    assert (df.clock_mhz > 0).all() and {"energy_mj", "power_w", "clock_mhz"} <= set(df.columns)


def test_serving_reports_energy():
    from sim.serving import ServingConfig, simulate
    from sim.workload_gen import Lengths, synthetic

    reqs = synthetic(40, 4.0, Lengths(256), Lengths(32), seed=1)
    per, summ = simulate(load_model("llama-2-7b"), load_device("h100-sxm"), preset_map("bf16"), reqs,
                         ServingConfig(max_batch=16))
    assert summ["energy_j"] > 0 and summ["energy_per_output_token_j"] > 0
    assert summ["energy_per_request_j"] == pytest.approx(summ["energy_j"] / 40)
    assert 136.4 <= summ["power_w"] <= summ["busy_power_w"] <= 700 + 1e-6
    assert 0 < summ["clock_mhz"] <= 1980 + 1e-9


# ---------------------------------------------------------------- the generator
@pytest.mark.parametrize("name,area,bf16,tdp", [("a100-like", 826, 312, 400), ("h100-like", 814, 989, 700)])
def test_generator_first_order_checks(name, area, bf16, tdp):
    d = load_device(name)
    assert d.area["total"] == pytest.approx(area, rel=0.15)
    assert d.peak("bf16") / 1e12 == pytest.approx(bf16, rel=0.15)
    assert d.tdp_w == pytest.approx(tdp, rel=0.15)
    parts = {k: v for k, v in d.area.items() if k != "total"}
    assert sum(parts.values()) == pytest.approx(d.area["total"], rel=1e-3) and min(parts.values()) > 0


def test_generated_device_prices_and_serves(tmp_path):
    design = tmp_path / "accel.yaml"
    design.write_text("""accelerator: my-accel
node_nm: 5
clock_mhz: 1500
cores: 96
units:
  bf16: {macs_per_core: 1024}
  mxint4: {area_share: 0.3}
sram_mb: 32
memory: {type: hbm3, stacks: 4}
""")
    d = load_device(str(design))
    assert d.name == "my-accel" and "mxint4" in d.units and d.peak("mxint4") > 3 * d.peak("bf16")
    assert d.memory_bytes == 64e9 and d.bandwidth == pytest.approx(4 * 0.67e12)
    # a larger mxint4 share buys more mxint4 peak and more area
    design2 = tmp_path / "accel2.yaml"
    design2.write_text(design.read_text().replace("0.3", "0.5"))
    d2 = load_device(str(design2))
    assert d2.peak("mxint4") > d.peak("mxint4") and d2.area["total"] > d.area["total"]
    # the cost model and the serving simulator use it like any GPU
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "latency", "-m", "llama-2-7b", "-d", str(design),
                        "-p", "bf16,mxint4", "-b", "1,16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "my-accel" in r.stdout and "mxint4" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "serve", "-m", "smollm2-135m", "-d", str(design),
                        "--qps", "4", "--requests", "30", "-p", "mxint4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "energy_per_output_token_j" in r.stdout


@pytest.mark.parametrize("edit,msg", [
    ("  bf16: {macs_per_core: -1024}", "must be > 0"),
    ("  bf16: {macs_per_core: 1024}\n  mxint4: {area_share: 1.2}", "must be < 1"),
    ("  bf16: {macs_per_core: 1024}\n  mxint4: {area_share: 0.6}\n  mxfp4: {area_share: 0.5}", "sum to"),
    ("  bf17: {macs_per_core: 1024}", "unknown unit kind"),
    ("  bf16: {macs_per_core: 1024, colour: red}", "unknown key"),
    ("  bf16: {macs_per_core: 1024}\n  fp8: {runs_on: int8, rate: 2}", "not a dedicated array"),
])
def test_bad_design_is_one_line_exit_2(tmp_path, edit, msg):
    design = tmp_path / "bad.yaml"
    design.write_text(f"accelerator: bad\nnode_nm: 5\nclock_mhz: 1500\ncores: 96\nunits:\n{edit}\nsram_mb: 32\n"
                      "memory: {type: hbm3, stacks: 4}\n")
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "devices", "-d", str(design)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_bad_design_keys_and_memory(tmp_path):
    from hwmodels.generator import generate

    base = dict(accelerator="x", node_nm=5, clock_mhz=1500, cores=96, units={"bf16": {"macs_per_core": 1024}},
                sram_mb=32, memory={"type": "hbm3", "stacks": 4})
    with pytest.raises(InputError, match="unknown key"):
        generate(dict(base, colour="red"), "x")
    with pytest.raises(InputError, match="memory.type"):
        generate(dict(base, memory={"type": "hbm9", "stacks": 4}), "x")
    with pytest.raises(InputError, match="outside"):
        generate(dict(base, node_nm=1), "x")


def test_devices_area_and_power_listings(capsys):
    from mpqsim.cli import main

    assert main(["devices", "--area"]) == 0
    out = capsys.readouterr().out
    assert "a100-like" in out and "h100-like" in out and "custom-mx" in out and "tensor_arrays" in out
    assert main(["devices", "--power"]) == 0
    out = capsys.readouterr().out
    assert "h100-sxm" in out and "calibrated on this device" in out and "transferred" in out


def test_calibration_file_records_what_it_was_fitted_to():
    cal = calibration()
    assert cal["reference_device"] == "h100-sxm" and cal["fitted_to"] == "h100_power_microbench.csv"
    assert 0.5 < cal["e_flop_pj"]["fp8"] / cal["e_flop_pj"]["bf16"] < 0.7  # chip-level: ~2x, not 4x
    from importlib import resources

    area = json.loads((resources.files("hwmodels") / "calibration" / "area.json").read_text())
    assert area["fitted_to"].startswith("a100-like") and 0 < area["misc_fraction"] < 1
