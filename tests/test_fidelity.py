"""The cost model's held-out error, recomputed from the recorded measurements and the shipped
calibration (hwmodels/calibration/*.json): fidelity cannot regress silently. The bounds are the
recorded held-out errors (benchmarks/results/fidelity.json, written by benchmarks/fidelity.py)
plus half a point."""

import json
from pathlib import Path

import pytest

from sim.calibration import errors, gemm_measurements, op_measurements, predict, predict_ops, summarise
from sim.gemm import price_gemm

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "measured"
RECORDED = json.loads((ROOT / "benchmarks" / "results" / "fidelity.json").read_text())


@pytest.mark.parametrize("what", ["gemm", "ops"])
def test_held_out_error_has_not_regressed(what):
    df = gemm_measurements(DATA) if what == "gemm" else op_measurements(DATA)
    err = errors(df, predict(df) if what == "gemm" else predict_ops(df))
    by = ["device", "kind"] if what == "gemm" else ["device", "kernel"]
    now = summarise(err[err.held_out], by).set_index(by)
    for r in RECORDED[f"{what}_held_out"]:
        assert now.loc[tuple(r[k] for k in by), "mape"] <= r["mape"] + 0.5, r


def test_no_fit_reads_the_held_out_device():
    for arch in ("hopper", "ampere"):
        doc = json.loads((ROOT / "hwmodels" / "calibration" / f"{arch}.json").read_text())
        for c in doc["constants"].values():
            assert c["fitted_to"] and not any(f.startswith("a40") for f in c["fitted_to"])


def test_w4a16_kernels_behave_as_measured_and_published():
    m = [1, 8, 16, 32, 128, 4096]
    bf16 = price_gemm("h100-sxm", m, 28672, 8192, "bf16").time_s
    tiny = bf16 / price_gemm("h100-sxm", m, 28672, 8192, "int4_g128", "bf16", "tinygemm").time_s
    marlin = bf16 / price_gemm("h100-sxm", m, 28672, 8192, "int4_g128", "bf16", "marlin").time_s
    assert tiny[0] > 2 and tiny[1] > 1 > tiny[2] and tiny[-1] < 0.1  # crossover between m = 8 and 16
    assert (marlin[:4] > 2.9).all() and marlin[4] < 1.2  # a ~3x win to m = 32, gone by m = 128
    g = price_gemm("h100-sxm", m, 4096, 4096, "int4_g128", "bf16", "tinygemm")
    assert g.kernel == "tinygemm" and g.calibrated
    assert not price_gemm("b200", m, 4096, 4096, "int4_g128", "bf16", "tinygemm").calibrated


def test_a_device_of_a_fitted_architecture_scales_by_its_datasheet():
    """H200 (Hopper, never measured): the same kernel constants, its own bandwidth: a decode GEMV is
    faster by about the bandwidth ratio, a large GEMM (same SMs and peak) costs the same."""
    h100 = price_gemm("h100-sxm", [1, 8192], 8192, 8192, "bf16")
    h200 = price_gemm("h200", [1, 8192], 8192, 8192, "bf16")
    assert h200.calibrated and h200.kernel == h100.kernel == "cublas"
    ratio = h100.t_memory_s[0] / h200.t_memory_s[0]
    assert ratio == pytest.approx(4.8 / 3.35, rel=0.02)
    assert h200.time_s[1] == pytest.approx(h100.time_s[1], rel=0.02)


def test_block_scaled_fp8_runs_on_the_fp8_unit_at_about_half_bf16_speed():
    """vLLM's block-scaled fp8 on H100: 0.4-0.7x bf16 for m <= 512 (an estimate from that figure);
    a device without fp8 units up-casts it."""
    m = [1, 16, 128, 512]
    g = price_gemm("h100-sxm", m, 4096, 4096, "fp8_e4m3_g128", "fp8_e4m3_g128")
    assert g.kernel == "block_fp8" and g.unit == "fp8" and not g.calibrated
    ratio = price_gemm("h100-sxm", m, 4096, 4096, "bf16").time_s / g.time_s
    assert ((ratio > 0.4) & (ratio < 0.7)).all()
    assert price_gemm("a100-80gb", m, 4096, 4096, "fp8_e4m3_g128", "fp8_e4m3_g128").kernel == "upcast"


def _vector_time(device, op, tokens):
    from dataclasses import replace

    from hwmodels.spec import load_device
    from quant.precision import preset_map
    from sim.assign import assign_table
    from sim.calibration import VIDUR_OPS
    from sim.costmodel import price
    from sim.lowering import lower
    from workloads.optable import table_from_rows

    d = replace(load_device(device), launch_s=0.0, launch_eager_s=0.0)
    low = lower(assign_table(table_from_rows(VIDUR_OPS[op][1]), preset_map("fp16")), [d])
    return float(price(low, batch=[float(tokens)], q=[1.0], past=[0.0])["time"][0])


def test_elementwise_kernels_are_latency_bound_and_transfer_by_resident_threads():
    """An RMSNorm sits at its occupancy roof (SMs x resident threads x the kernel's per-thread
    rate), not at the DRAM roof: the H200 (H100's SMs, 1.43x its bandwidth) runs it no faster,
    and the A40 (84 SMs of 1536 threads against the A100's 108 of 2048) about 1.7x slower, as
    measured (176 vs 104 us at 4096 tokens; the A40 is never fitted). The residual add is
    DRAM-bound once it outgrows the L2: the H200 runs it faster by about the bandwidth ratio."""
    t = 4096
    assert _vector_time("h200", "input_layernorm", t) == pytest.approx(_vector_time("h100-sxm", "input_layernorm", t),
                                                                      rel=0.01)
    ratio = _vector_time("a40", "input_layernorm", t) / _vector_time("a100-80gb", "input_layernorm", t)
    assert ratio == pytest.approx(176.0 / 104.0, rel=0.15)
    big = 65536  # 1.6 GB: far past any L2
    add = _vector_time("h100-sxm", "add", big) / _vector_time("h200", "add", big)
    assert add == pytest.approx(4.8 / 3.35, rel=0.05)


def _held_out_copy(tmp_path, device="h200", **change):
    """The shared H100 GEMMs relabelled as another device's, as benchmarks/gpu/gemm_shapes.py writes them."""
    import pandas as pd

    d = pd.read_csv(DATA / "h100_gemm_llama2_7b_shapes.csv")
    d.insert(1, "device", device)
    for k, v in change.items():
        d[k] = v
    (tmp_path / device).mkdir()
    d.to_csv(tmp_path / device / "gemm_shapes.csv", index=False)
    return tmp_path


def test_gemms_of_another_gpu_are_all_held_out_and_leave_the_split_alone(tmp_path):
    base = gemm_measurements(DATA)
    both = gemm_measurements(DATA, _held_out_copy(tmp_path))
    extra = both[both.transfer]
    assert len(extra) == 425 and extra.held_out.all() and set(extra.device) == {"h200"}
    assert (both[~both.transfer].held_out.to_numpy() == base.held_out.to_numpy()).all()


def test_a_malformed_held_out_file_names_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="unknown kind or op fp4.*valid kinds: bf16"):
        gemm_measurements(DATA, _held_out_copy(tmp_path, kind="fp4"))


def test_gpu_gemm_script_runs_its_paths_on_the_cpu_and_resumes(tmp_path):
    """benchmarks/gpu/gemm_shapes.py (run on a lent GPU) checked on the CPU: every kind's kernel
    call, the CSV the held-out reader takes, and a rerun that adds only the missing rows."""
    import subprocess
    import sys

    import pandas as pd

    script = [sys.executable, str(ROOT / "benchmarks" / "gpu" / "gemm_shapes.py"), "--out", str(tmp_path / "h200"),
              "--device", "cpu", "--smoke", "--device-id", "h200", "--no-ceilings"]
    subprocess.run(script + ["--m", "1,32"], check=True, capture_output=True)
    r = subprocess.run(script + ["--m", "1,32,64"], check=True, capture_output=True, text=True)
    assert "wrote 12 rows" in r.stdout  # only m = 64, for 6 kinds x 2 shapes
    d = pd.read_csv(tmp_path / "h200" / "gemm_shapes.csv")
    assert len(d) == 34 and not d.duplicated(["kind", "op", "m"]).any()  # int8 refuses m <= 16
    assert (d.time_ms > 0).all() and set(d.kind) == {"bf16", "fp16", "fp8", "fp8_rowwise", "int8", "w4a16"}
    bad = subprocess.run(script + ["--kinds", "bf16,fp4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "choose from bf16" in bad.stderr and "Traceback" not in bad.stderr


def test_a_held_out_file_of_other_shapes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="n, k differ"):
        gemm_measurements(DATA, _held_out_copy(tmp_path, n=256))


def test_a_held_out_file_of_an_unknown_device_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="h300.*h200"):
        gemm_measurements(DATA, _held_out_copy(tmp_path, device="h300"))


def test_public_whole_model_runs_have_not_regressed():
    """gpt-fast's published A100 decode rates (benchmarks/data/public/, never fitted) priced again:
    the error of every group is no worse than recorded (benchmarks/results/public_e2e.json) plus
    half a point, and the rows are the published ones."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("public_e2e", ROOT / "benchmarks" / "public_e2e.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rec = json.loads((ROOT / "benchmarks" / "results" / "public_e2e.json").read_text())
    df = mod.gpt_fast()
    assert len(df) == len(rec["rows"]) == 24 and (df.tokens_per_s > 0).all()
    now = mod.summary(df).set_index("group")
    for r in rec["by_group"]:
        assert now.loc[r["group"], "mape"] <= r["mape"] + 0.5, r
