"""sim.sizing: the unit-split answer (issue 20) behaves as the physics says it must."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mpqsim.pareto import pareto
from sim.sizing import SizingQuestion, base_design, design_for, designs, qr_from_law, ratio_map, size, split_grid
from workloads import load_model

KINDS = ("bf16", "fp8", "mxint4")


def test_split_grid_covers_the_simplex():
    g = split_grid(3, 0.25)
    assert np.allclose(g.sum(1), 1)
    assert (g[:, 0] >= 0.25 - 1e-12).all()
    assert len(g) == len({tuple(r) for r in g.round(6)}) == 10  # compositions of 4 steps with the first >= 1


def test_designs_hit_the_area_budget_and_peaks_follow_the_shares():
    q = SizingQuestion(kinds=KINDS, step=0.25, area_mm2=800)
    splits, devs = designs(q)
    assert np.allclose(splits.area_mm2, 800, rtol=5e-3)
    assert (splits.power_budget_w == splits.power_budget_w.iloc[0]).all()  # one board budget for every split
    only_bf16 = splits[splits.share_bf16 == 1].iloc[0]
    half = splits[(splits.share_bf16 == 0.5) & (splits.share_mxint4 == 0.5)].iloc[0]
    # half the dedicated array area (the formats riding on the bf16 array add 5 % of its area each, so
    # a smaller bf16 array frees a little more): a bit over half the all-bf16 chip's peak
    assert 0.5 < half.tflops_bf16 / only_bf16.tflops_bf16 < 0.6
    # an MXINT4 MAC takes ~1/8 of a BF16 MAC's area (generator.yaml): the same area gives ~8x the peak
    assert 6 < half.tflops_mxint4 / half.tflops_bf16 < 10


def test_design_too_small_for_its_fixed_parts_is_refused():
    base, where = base_design("custom-mx")
    from mpqsim import InputError

    with pytest.raises(InputError, match="fixed parts"):
        design_for(base, KINDS, [1, 0, 0], 100, None, where)


@pytest.mark.parametrize("qr", [0.0, 0.5, 0.9, 0.99])
def test_ratio_map_reaches_its_target(qr):
    spec = load_model("llama-3.1-8b")
    pmap, got = ratio_map(spec, qr, "mxint4_32", "bf16")
    # within the largest unit not taken: the lm_head and the embedding table are 6.5 % each of 8B
    assert abs(got - qr) < 0.035
    # the size rule quantizes the biggest matmuls first: at 0.5 the MLP projections, topped up by smaller ones
    if qr == 0.5:
        assert sum(".mlp." in n for n in pmap.ops) > 0.8 * len(pmap.ops)
        assert "lm_head" not in pmap.ops


def test_transfer_rule_follows_the_smaller_models_map():
    from quant.precision import OpFormats, PrecisionMap

    spec = load_model("llama-3.1-8b")  # 32 layers; the source map marks the attention of the first half low
    low = OpFormats.of("mxint4_32", "mxint4_32")
    src = PrecisionMap("src", ops={f"model.layers.{i}.self_attn.{p}": low for i in range(15) for p in ("q_proj", "o_proj")})
    src.ops["model.layers.29.mlp.up_proj"] = OpFormats.of("bf16", "bf16")  # says the source has 30 layers
    pmap, got = ratio_map(spec, 0.05, "mxint4_32", "bf16", rule="transfer", transfer=src)
    layers = {int(n.split(".")[2]) for n in pmap.ops}
    assert all(".self_attn." in n for n in pmap.ops) and max(layers) < 17


def test_law_prediction():
    mid, lo, hi = qr_from_law(None, 0.1, 8.0)   # seed 000's published Law 1 at 10 %
    assert mid == pytest.approx(1 - (np.log(8.0) - 3.35) / -11.27)
    assert np.isnan(lo) and np.isnan(hi)
    assert qr_from_law(None, 0.1, 405.0)[0] == 1.0  # clipped


def test_law_prediction_from_a_fits_file(tmp_path):
    doc = {"law1": [{"law": "law1", "params": {"k": -11.27, "c": 3.35}, "intervals": {"k": [-13, -9.5], "c": [3.0, 3.7]},
                     "meta": {"budget": 0.1}}]}
    (tmp_path / "fits.json").write_text(json.dumps(doc))
    mid, lo, hi = qr_from_law(str(tmp_path / "fits.json"), 0.1, 8.0)
    assert lo < mid < hi


def test_pareto_keeps_only_non_dominated_rows():
    df = pd.DataFrame(dict(x=[1, 2, 3, 2, 4], y=[5, 3, 1, 4, 1]))
    keep = pareto(df, "x", "y")
    assert list(df[keep].index) == [0, 1, 2]
    for i in df[keep].index:
        assert not ((df.x <= df.x[i]) & (df.y <= df.y[i]) & ((df.x < df.x[i]) | (df.y < df.y[i]))).any()


@pytest.fixture(scope="module")
def answer():
    q = SizingQuestion(models=("llama-3.1-8b",), qrs=(0.0, 0.5, 0.99), step=0.1, batches=(1, 64), attention="low")
    return size(q)


def test_no_low_ops_means_no_low_units(answer):
    b = answer["best"]
    assert (b[b.qr == 0].share_mxint4 == 0).all()


def test_more_low_precision_work_wants_more_low_precision_area(answer):
    b = answer["best"][answer["best"].batch == 64].set_index("target_qr")
    assert b.loc[0.99, "share_mxint4"] > b.loc[0.5, "share_mxint4"] >= b.loc[0.0, "share_mxint4"]
    # and the optimum is faster than the all-bf16 chip
    p = answer["points"]
    allbf = p[(p.batch == 64) & (p.target_qr == 0.99) & (p.share_bf16 == 1)].request_ms.iloc[0]
    assert b.loc[0.99, "request_ms"] < allbf


def test_the_best_split_is_the_minimum_and_on_the_front(answer):
    p, b, f = answer["points"], answer["best"], answer["front"]
    for r in b.itertuples():
        g = p[(p.precision == r.precision) & (p.batch == r.batch) & p.fits]
        assert r.request_ms == g.request_ms.min()
        assert r.share_mxint4 >= r.mxint4_lo - 1e-12 and r.share_mxint4 <= r.mxint4_hi + 1e-12
        fr = f[(f.precision == r.precision) & (f.batch == r.batch)]
        assert fr.request_ms.min() == pytest.approx(r.request_ms)
        assert fr.request_j_per_token.min() == pytest.approx(g.request_j_per_token.min())


def test_big_models_get_tensor_parallelism():
    q = SizingQuestion(models=("llama-3.1-405b",), qrs=(0.9,), step=0.25, batches=(1,))
    res = size(q)
    lay = res["maps"].layout.iloc[0]
    assert lay != "tp1" and res["best"].fits.all()


def test_cli_size_writes_its_tables(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "size", "-m", "llama-3.1-8b", "--qr", "0.9",
                        "--step", "0.25", "-b", "1,16", "-o", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "optimal split" in r.stdout
    pts = pd.read_parquet(tmp_path / "points.parquet")
    assert len(pts) == 10 * 2 and {"share_mxint4", "request_ms", "area_mm2"} <= set(pts.columns)
    for name in ("best", "front", "maps"):
        assert (tmp_path / f"{name}.csv").is_file()


def test_cli_size_from_the_published_law():
    r = subprocess.run([sys.executable, "-m", "mpqsim.cli", "size", "-m", "llama-3.1-8b", "--qr-law", "published",
                        "--budget", "0.1", "--step", "0.25", "-b", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "0.887" in r.stderr  # 1 - (ln 8.03 - 3.35) / -11.27


def test_design_variants_by_name():
    from hwmodels import load_device

    base, more = load_device("custom-mx"), load_device("custom-mx[memory.stacks=6,sram_mb=32]")
    assert more.memory_bytes == pytest.approx(base.memory_bytes * 6 / 4)
    assert more.l2_bytes < base.l2_bytes and more.area["sram"] < base.area["sram"]
    assert more.name == "custom-mx[memory.stacks=6,sram_mb=32]"
    from mpqsim import InputError

    with pytest.raises(InputError, match="unknown design key"):
        load_device("custom-mx[bogus=1]")
    with pytest.raises(InputError, match="apply to accelerator designs"):
        load_device("h100-sxm[cores=96]")


def test_sizing_searches_design_numbers_too():
    q = SizingQuestion(models=("llama-3.1-8b",), qrs=(0.9,), step=0.25, batches=(1,),
                       vary=(("sram_mb", (16.0, 64.0, 400.0)), ("memory.stacks", (4.0, 6.0))))
    res = size(q)
    pts = res["points"]
    assert set(pts.sram_mb) == {16.0, 64.0} and set(pts["memory.stacks"]) == {4.0, 6.0}  # 400 MB does not fit
    assert [s for s, _ in res["skipped"]] == [{"sram_mb": 400.0, "memory.stacks": 4.0},
                                              {"sram_mb": 400.0, "memory.stacks": 6.0}]
    assert np.allclose(pts.area_mm2, 800, rtol=5e-3)
    # on one die budget, SRAM takes tensor area: less bf16 peak at the same split
    a = pts[(pts.share_bf16 == 1) & (pts["memory.stacks"] == 4)].set_index("sram_mb").tflops_bf16
    assert a[16.0] > a[64.0]
    # more stacks: more bandwidth, a faster memory-bound decode at batch 1
    b = res["best"].iloc[0]
    assert b["memory.stacks"] == 6.0


def test_law_prediction_uses_the_joint_bootstrap_draws(tmp_path):
    from quant.scaling import fit_law1

    rng = np.random.default_rng(0)
    sizes = np.array([0.5, 1.8, 7.0, 14.0, 72.0])
    qr = 1 - (np.log(sizes) - 3.35) / -11.27 + rng.normal(0, 0.01, len(sizes))
    fit = fit_law1(sizes, np.clip(qr, 0, 1), 0.1, n_boot=400)
    doc = {"law1": [fit.to_json()]}
    assert len(doc["law1"][0]["samples"]) == 400
    (tmp_path / "fits.json").write_text(json.dumps(doc))
    mid, lo, hi = qr_from_law(str(tmp_path / "fits.json"), 0.1, 8.0)
    from quant.scaling import predict_max_qr

    q, plo, phi = predict_max_qr(fit, 8.0)
    assert mid == pytest.approx(float(q[0])) and lo == pytest.approx(float(plo[0]), abs=1e-4)
    assert hi == pytest.approx(float(phi[0]), abs=1e-4)


def test_goodput_objective_serves_the_candidate_designs():
    q = SizingQuestion(models=("llama-3.1-8b",), qrs=(0.9,), kinds=("bf16", "mxint4"), step=0.25, batches=(1, 16),
                       objective="goodput", serve_requests=60, slo_ttft_s=1.0, slo_tpot_s=0.05)
    res = size(q)
    b = res["best"]
    assert len(b) == 1 and b.goodput_qps.iloc[0] > 0 and b.simulations.iloc[0] >= 2
    assert {"share_bf16", "share_mxint4", "goodput_qps_per_mm2"} <= set(b.columns)


def test_a_searched_map_file_is_sized_with_its_qr(tmp_path):
    from quant.precision import OpFormats, PrecisionMap

    low = OpFormats.of("mxint4_32", "mxint4_32")
    pmap = PrecisionMap("mine-qr0.3", ops={f"model.layers.{i}.mlp.{p}": low for i in range(10)
                                             for p in ("gate_proj", "up_proj", "down_proj")})
    res = size(SizingQuestion(models=("llama-3.1-8b",), step=0.25, batches=(1,)), {"llama-3.1-8b": [pmap]})
    assert 0.2 < res["best"].qr.iloc[0] < 0.3 and res["best"].target_qr.iloc[0] == 0.3
    bad = PrecisionMap("x", ops={"model.layers.99.mlp.up_proj": low})
    from mpqsim import InputError

    with pytest.raises(InputError, match="the model lacks"):
        size(SizingQuestion(models=("llama-3.1-8b",), step=0.25, batches=(1,)), {"llama-3.1-8b": [bad]})
