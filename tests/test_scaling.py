"""quant.scaling: seed 000's Laws 1 and 2 and seed 004's bit frontier, recovered from synthetic data."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mpqsim import InputError
from quant.scaling import (PUBLISHED_LAW1, PUBLISHED_LAW2_7B, bit_frontier, fit_law1, fit_law2, max_qr_under_budget,
                           optimal_bits, predict_max_qr)


@pytest.mark.parametrize("budget", sorted(PUBLISHED_LAW1))
def test_law1_recovers_published_parameters(budget):
    k, c = PUBLISHED_LAW1[budget]
    rng = np.random.default_rng(1)
    # seven models whose maximum Q_r spans the published fit's range (a fit is valid only there: at
    # 20 % it would put 72B beyond Q_r = 1)
    qr = np.linspace(0.45, 0.97, 7)
    sizes = np.exp(k * (1 - qr) + c) * np.exp(rng.normal(0, 0.02, len(qr)))  # 2 % scatter in the sizes
    f = fit_law1(sizes, qr, budget)
    assert f.params["k"] == pytest.approx(k, rel=0.05) and f.params["c"] == pytest.approx(c, rel=0.05)
    assert f.intervals["k"][0] < f.params["k"] < f.intervals["k"][1]
    # the inverse: the Q_r it predicts for a model inside the range, with an interval around it
    size = float(np.exp(k * 0.1 + c))
    q, lo, hi = predict_max_qr(f, size)
    assert lo[0] <= q[0] <= hi[0] and q[0] == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("q", sorted(PUBLISHED_LAW2_7B))
def test_law2_recovers_published_parameters(q):
    a, k = PUBLISHED_LAW2_7B[q]
    blocks = np.array([8, 16, 32, 64, 128, 256])
    rng = np.random.default_rng(2)
    delta = a * blocks ** k * np.exp(rng.normal(0, 0.02, len(blocks)))
    f = fit_law2(blocks, delta, q)
    assert f.params["A"] == pytest.approx(a, rel=0.05) and f.params["k"] == pytest.approx(k, rel=0.05)
    assert f.intervals["A"][0] < f.params["A"] < f.intervals["A"][1]


def test_max_qr_under_budget_interpolates():
    qr, delta = [0.5, 0.8, 0.9, 0.95], [0.01, 0.04, 0.08, 0.3]
    assert max_qr_under_budget(qr, delta, 0.06) == pytest.approx(0.85)
    assert max_qr_under_budget(qr, delta, 1.0) == 0.95
    assert max_qr_under_budget(qr, delta, 0.0) == 0.0
    # a non-monotone search result is read as its running maximum
    assert max_qr_under_budget([0.5, 0.8, 0.9], [0.05, 0.03, 0.2], 0.04) == pytest.approx(0.5 * 0.04 / 0.05)


def test_bit_frontier_finds_four_bits():
    rows = []
    for params in (1e9, 3e9, 7e9, 13e9):
        base = 10 * (params / 1e9) ** -0.1
        for bits, penalty in ((16, 0.0), (8, 0.001), (4, 0.02), (3, 0.25)):
            rows.append(dict(model=f"{params:g}", params=params, bits_per_param=bits, ppl=base * (1 + penalty)))
    fr = bit_frontier(pd.DataFrame(rows))
    assert fr.pareto.any() and (np.diff(fr[fr.pareto].ppl) < 0).all()
    assert optimal_bits(fr) == 4


def test_bad_fit_inputs():
    with pytest.raises(InputError, match="two points"):
        fit_law1([7.0], [0.9], 0.05)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        fit_law1([1.0, 7.0], [0.5, 1.5], 0.05)
    with pytest.raises(InputError, match="> 0"):
        fit_law2([0, 32], [0.1, 0.2], 0.9)


def test_quant_fit_cli(tmp_path):
    k, c = PUBLISHED_LAW1[0.10]
    paths = []
    for qmax in (0.55, 0.7, 0.85, 0.93):
        size = float(np.exp(k * (1 - qmax) + c))
        qrs = np.round(np.arange(0.40, 0.995, 0.01), 2)  # a dense search: interpolation error small
        delta = 0.10 * np.exp(12 * (qrs - qmax))  # crosses the 10 % budget at qmax
        d = tmp_path / f"m{size:g}"
        d.mkdir()
        pd.DataFrame(dict(target_qr=qrs, qr=qrs, delta=delta, params=size * 1e9, model=f"m{size:g}",
                          block=32)).to_csv(d / "results.csv", index=False)
        paths.append(str(d))
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "quant", "fit", *paths, "-o", str(tmp_path / "out"),
                        "--budgets", "0.1", "--predict", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    fits = json.loads((tmp_path / "out" / "fits.json").read_text())
    assert fits["law1"][0]["params"]["k"] == pytest.approx(k, rel=0.05)
    assert "predicted maximum Q_r at 20B" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "quant", "fit", str(tmp_path / "nope"), "-o",
                        str(tmp_path / "o2")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no results file" in r.stderr


def test_gptq_beats_round_to_nearest_and_stays_on_the_grid():
    import torch

    from quant.gptq import gptq_matrix, output_error
    from quant.quantize import quantize

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 128, generator=g) @ (0.3 * torch.randn(128, 128, generator=g)) + torch.randn(1024, 128, generator=g)
    h = 2 * x.T @ x / len(x)
    w = torch.randn(32, 128, generator=g)
    for f in ("mxint4_32", "mxfp4_e2m1_32", "int4_g64", "fp8_e4m3"):
        q = gptq_matrix(w, h, f)
        assert output_error(w, q, h) < 0.8 * output_error(w, quantize(w, f, axis=-1), h), f
        if f.startswith("mx") or f.startswith("fp8"):
            assert torch.equal(quantize(q, f, axis=-1), q), f  # exactly on the format's grid
    with pytest.raises(InputError, match="GPTQ supports"):
        gptq_matrix(w, h, "nf4_64")


def test_sweep_blocks_formats_and_resume(tmp_path):
    from quant.sweeps import format_for, sweep_blocks

    assert format_for("int", 4, "128") == "int4_g128" and format_for("int", 4, "chan") == "int4_chan"
    assert format_for("fp", 4, "32") == "fp4_e2m1_g32" and format_for("nf", 4, "64") == "nf4_64"
    assert format_for("mxint", 4, "32") == "mxint4_32" and format_for("mxfp", 4, "16") == "mxfp4_e2m1_16"
    with pytest.raises(InputError, match="blocks only"):
        format_for("nf", 4, "tens")
    with pytest.raises(InputError, match="unknown data type"):
        format_for("posit", 4, "32")
    calls = []

    def evaluator(pmap):  # delta grows with the block size, as Law 2 says
        fmt = pmap.roles["linear"].weight
        calls.append(fmt.name)
        return dict(ppl=10 + fmt.block / 100, ref_ppl=10.0, delta=0.01 * max(fmt.block, 1) ** 0.5)

    df = sweep_blocks(evaluator, ["int", "mxint"], 4, ["16", "64"], tmp_path)
    assert len(df) == 4 and len(calls) == 4
    # a second run (after an interruption) evaluates only what is missing, and never duplicates
    df = sweep_blocks(evaluator, ["int", "mxint", "nf"], 4, ["16", "64"], tmp_path)
    assert len(df) == 6 and len(calls) == 6 and df.format.is_unique
    from quant.scaling import fit_law2

    g = df[df.type == "int"]
    assert fit_law2(g.block_elems, g.delta, 0.8).params["k"] == pytest.approx(0.5, rel=1e-6)


def test_rf_predictor_on_synthetic_models():
    pytest.importorskip("sklearn")
    from quant.predictor import FEATURES, held_out_error

    rng = np.random.default_rng(0)
    rows = []
    for model, params, nll in (("a", 1e8, 3.2), ("b", 3e8, 2.9), ("c", 1e9, 2.6), ("d", 3e9, 2.4)):
        for fmt, bits, e, block in (("mxint4_32", 4, 0, 32), ("mxint4_128", 4, 0, 128), ("mxfp4_e2m1_32", 4, 2, 32),
                                    ("mxint8_32", 8, 0, 32), ("mxint3_32", 3, 0, 32)):
            sqnr = 6.0 * bits - 2 * np.log2(block) + rng.normal(0, 0.3)
            rtn = nll + 8 * np.exp(-sqnr / 6) / np.log10(params)
            gptq = nll + 0.5 * (rtn - nll)  # GPTQ recovers half of the RTN damage
            rows.append(dict(model=model, format=fmt, params=params, nll=nll, sqnr_db=sqnr, rtn_nll=rtn,
                             radial_slope=-(rtn - nll) / 6, precision_bits=bits, exp_bits=e, block=block,
                             gptq_nll=gptq))
    df = pd.DataFrame(rows)
    assert set(FEATURES) <= set(df.columns)
    res = held_out_error(df, "b")
    assert res["n_test"] == 5 and res["mae_nats"] < res["rtn_baseline_mae_nats"]
    with pytest.raises(InputError, match="held-out model"):
        held_out_error(df, "zz")
