import json

import numpy as np
import pytest

from mpqsim import InputError
from quant.formats import parse_format
from quant.precision import PrecisionMap, OpFormats, assign_formats, flop_ratio, preset_map, quant_ratio
from sim.costmodel import assign
from sim.latency import latency_table
from workloads import build_optable, counts, load_model, op_names


def _layerwise_map(spec, low_layers, fmt="mxint4_32"):
    t = build_optable(spec)
    ops = {}
    for n in op_names(t, roles=("linear",)):
        layer = int(n.split(".")[2])
        if layer in low_layers:
            ops[n] = {"weight": fmt, "act": fmt}
    return PrecisionMap.from_json({"name": "layerwise", "ops": ops})


def test_json_round_trip(tmp_path):
    m = preset_map("mxint4")
    m.ops["model.layers.0.self_attn.q_proj"] = OpFormats.of("bf16", "bf16")
    p = tmp_path / "m.json"
    m.save(p)
    back = PrecisionMap.load(p)
    assert back.to_json() == m.to_json()


def test_map_naming_unknown_ops_is_rejected(llama7b):
    m = PrecisionMap.from_json({"ops": {"model.layers.40.self_attn.q_proj": {"weight": "mxint4_32"}}})
    with pytest.raises(InputError, match="names 1 op.*the model lacks.*model.layers.40"):
        assign(llama7b, m)


@pytest.mark.parametrize("doc,msg", [
    ({"ops": {"x": {"weight": "int4-g128"}}}, "unknown format"),
    ({"ops": {"x": {"wieght": "bf16"}}}, "must be"),
    ({"roles": {"mlp": {"weight": "bf16"}}}, "unknown role"),
    ({"kv_cache": "fp9"}, "kv_cache"),
    ({"layers": {}}, "unknown key"),
    ({"proxy": 1.2}, "'proxy' must be a fraction"),
    ({"proxy": "2%"}, "'proxy' must be a fraction"),
    ([], "JSON object"),
])
def test_bad_maps(doc, msg):
    with pytest.raises(InputError, match=msg):
        PrecisionMap.from_json(doc)


def test_layerwise_map_splits_rows_and_has_claimed_qr(llama7b):
    m = _layerwise_map(llama7b, low_layers=set(range(16)))
    t = assign_formats(build_optable(llama7b), m)
    q = t[t.name.str.endswith("q_proj")]
    assert sorted(q.repeat) == [16, 16] and set(q.weight_fmt) == {"bf16", "mxint4_32"}
    # half of the decoder layers, out of all 6.74 B parameters (seed 000's Q_r)
    layer_params = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert quant_ratio(t) == pytest.approx(0.5 * layer_params / 6_738_415_616)
    assert quant_ratio(assign_formats(build_optable(llama7b), preset_map("bf16"))) == 0.0


def test_flop_ratio_sees_attention(llama7b):
    t = assign_formats(build_optable(llama7b), preset_map("w4a16"))
    c = counts(t, 1, 4096, 0)
    flops = (c.flops * c.repeat).to_numpy()
    fr = flop_ratio(t, flops)
    assert 0 < fr < 1  # qk/av stay bf16 and carry FLOPs but no parameters
    tm = assign_formats(build_optable(llama7b), preset_map("mxint4"))
    lm = (c.role == "lm_head").to_numpy()
    assert flop_ratio(tm, flops) == pytest.approx(1 - flops[lm].sum() / flops[tm.role.isin(
        ["linear", "attention", "lm_head"]).to_numpy()].sum())


def test_explicit_map_prices_like_the_equivalent_preset(llama7b, h100, tmp_path):
    ops = {n: {"weight": "mxint4_32", "act": "bf16"} for n in op_names(build_optable(llama7b), roles=("linear",))}
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"name": "explicit", "ops": ops}))
    m = PrecisionMap.load(path)
    a = latency_table(llama7b, [h100], [m], [1, 8], 512, 1024)
    b = latency_table(llama7b, [h100], [preset_map("w4a16-mx")], [1, 8], 512, 1024)
    cols = ["prefill_ms", "decode_ms", "weights_gb", "kv_gb"]
    assert np.allclose(a[cols].to_numpy(), b[cols].to_numpy())


def test_mixed_map_lies_between_its_extremes(llama7b, h100):
    half = _layerwise_map(llama7b, set(range(0, 32, 2)))
    rows = latency_table(llama7b, [h100], [preset_map("bf16"), half, preset_map("mxint4")], [1], 512, 1024)
    d = rows.set_index("precision").decode_ms
    w = rows.set_index("precision").weights_gb
    assert d["mxint4"] < d["layerwise"] < d["bf16"]
    assert w["mxint4"] < w["layerwise"] < w["bf16"]


def test_per_expert_map_on_moe():
    spec = load_model("mixtral-8x7b")
    ops = {f"model.layers.{i}.block_sparse_moe.experts.{e}.w1": {"weight": "mxint4_32", "act": "bf16"}
           for i in range(32) for e in range(4)}
    t = assign_formats(build_optable(spec), PrecisionMap.from_json({"ops": ops}))
    w1 = t[t.name.str.endswith("experts.{e}.w1")]
    assert sorted(w1.row_experts) == [4, 4] and (w1.repeat == 32).all()
    assert 0 < quant_ratio(t) < 0.2


@pytest.mark.parametrize("text", ['{"settings": {"model": "x", "te', '', '[1, 2]\n{"signature": "a"}\n'])
def test_journal_with_a_damaged_header_is_a_clear_error(tmp_path, text):
    from quant.search import Journal

    p = tmp_path / "journal.jsonl"
    p.write_text(text or "\n")
    with pytest.raises(InputError, match="settings line .* is damaged"):
        Journal(p, {"model": "x"})


def test_journal_header_is_written_whole_and_cut_records_are_redone(tmp_path):
    from quant.search import Journal

    p = tmp_path / "journal.jsonl"
    j = Journal(p, {"model": "x"})
    j.add({"signature": "a", "delta": 0.1})
    with open(p, "a") as f:
        f.write('{"signature": "b", "del')  # cut by a kill
    assert set(Journal(p, {"model": "x"}).records) == {"a"}
    assert not (tmp_path / "journal.jsonl.tmp").exists()


def test_presets_table_and_map_summary(llama7b):
    from quant.precision import map_summary, presets_table
    from workloads import build_optable

    t = presets_table()
    assert {"preset", "weight", "act", "attention", "kv_cache", "what"} <= set(t.columns) and "mxint4" in set(t.preset)
    s = map_summary(build_optable(llama7b), preset_map("w4a16"), tokens=128)
    assert 0.9 < s["q_r"] < 1.0 and 0.0 < s["flop_ratio"] < 1.0


def test_proxy_map_prices_the_kept_columns_as_a_16_bit_gemm(llama7b, h100, tmp_path):
    """Seed 004's proxy quantization in a map: each low-precision weight splits into the quantized
    columns and a bf16 GEMM over the kept ones; bytes, Q_r and time follow; the map round-trips."""
    from dataclasses import replace

    base = preset_map("w4a16")
    prox = replace(base, name="w4a16-proxy", proxy=0.05)
    t = assign_formats(build_optable(llama7b), prox)
    q = t[t.name.str.startswith("model.layers.{i}.self_attn.q_proj")].set_index("name")
    kept = round(0.05 * 4096)
    assert q.loc["model.layers.{i}.self_attn.q_proj", "k"] == 4096 - kept
    assert q.loc["model.layers.{i}.self_attn.q_proj.proxy16", ["k", "weight_fmt", "act_fmt"]].tolist() == \
        [kept, "bf16", "bf16"]
    assert t[t.weight_fmt == "bf16"].name.str.endswith(".proxy16").sum() == 7  # q k v o gate up down
    assert t.params.sum() == assign_formats(build_optable(llama7b), base).params.sum()  # nothing lost or doubled
    moved = 32 * (4 * 4096 * kept + 2 * 11008 * kept + 4096 * round(0.05 * 11008))  # kept weights, all layers
    assert quant_ratio(t) == pytest.approx(quant_ratio(assign_formats(build_optable(llama7b), base))
                                           - moved / 6_738_415_616)
    rows = latency_table(llama7b, [h100], [base, prox, preset_map("bf16")], [1], 512, 1024).set_index("precision")
    w = rows.weights_gb
    # the kept weights at 2 bytes instead of int4 g128's (its scales included)
    b4 = parse_format("int4_g128").bytes_per_element
    assert w[prox.name] - w[base.name] == pytest.approx(moved * (2 - b4) / 1e9, rel=1e-3)
    d = rows.decode_ms
    assert d[base.name] < d[prox.name] < d["bf16"]  # the kept columns cost bytes and a kernel per op
    path = tmp_path / "p.json"
    prox.save(path)
    assert PrecisionMap.load(path).proxy == 0.05 and json.loads(path.read_text())["proxy"] == 0.05
    assert "proxy" not in base.to_json()  # maps without it are unchanged
