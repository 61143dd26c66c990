"""The GEMM model's held-out error, recomputed from the recorded measurements and the shipped
calibration (hwmodels/calibration/*.json): fidelity cannot regress silently. The bounds are the
recorded held-out errors (benchmarks/results/fidelity.json) plus half a point."""

import json
from pathlib import Path

import pytest

from sim.calibration import errors, gemm_measurements, predict, summarise
from sim.gemm import price_gemm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def held_out():
    df = gemm_measurements(ROOT / "benchmarks" / "data" / "measured")
    err = errors(df, predict(df))
    return summarise(err[err.held_out], ["device", "kind"]).set_index(["device", "kind"])


def test_held_out_gemm_error_has_not_regressed(held_out):
    rec = json.loads((ROOT / "benchmarks" / "results" / "fidelity.json").read_text())["held_out"]
    for r in rec:
        assert held_out.loc[(r["device"], r["kind"]), "mape"] <= r["mape"] + 0.5, r


def test_no_fit_reads_the_held_out_device():
    for arch in ("hopper", "ampere"):
        doc = json.loads((ROOT / "hwmodels" / "calibration" / f"{arch}.json").read_text())
        for c in doc["constants"].values():
            assert not any(f.startswith("a40") for f in c["fitted_to"])


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
