import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from mpqsim import InputError
from workloads import build_optable, bundled_models, counts, load_model, op_names, total_params
from workloads.optable import attended_pairs

REQUIRED = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
            "qwen1.5-0.5b", "qwen1.5-1.8b", "qwen1.5-4b", "qwen1.5-7b", "qwen1.5-14b", "qwen1.5-32b",
            "qwen1.5-72b", "gemma-2-2b", "gemma-2-9b", "gemma-2-27b", "opt-125m", "opt-1.3b", "opt-6.7b",
            "opt-13b", "opt-30b", "opt-66b", "opt-175b", "mixtral-8x7b", "smollm2-135m"]


def test_required_models_are_bundled():
    assert set(REQUIRED) <= set(bundled_models())


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_parameter_count_matches_published(name):
    spec = load_model(name)
    assert spec.published_params, f"{name} has no published parameter count"
    n = total_params(build_optable(spec))
    assert abs(n / spec.published_params - 1) < 0.005, (name, n, spec.published_params)


def test_llama2_7b_exact_parameters(llama7b):
    # untied embedding and lm_head are each counted once
    assert total_params(build_optable(llama7b)) == 6_738_415_616


def test_tied_lm_head_counted_once():
    t = build_optable(load_model("smollm2-135m"))
    head = t[t.role == "lm_head"].iloc[0]
    assert head.params == 0 and head.w_elems == 49152 * 576  # read at run time, stored once


def _row(t, suffix):
    rows = t[t.name.str.endswith(suffix)]
    assert len(rows) == 1, suffix
    return rows.iloc[0]


def test_gqa_shapes():
    spec = load_model("llama-3.1-8b")  # 32 query heads, 8 KV heads, head_dim 128
    c = counts(build_optable(spec), batch=4, q=1, past=1023)
    k = _row(c, "self_attn.k_proj")
    assert (k.m, k.n, k.k) == (4, 8 * 128, 4096)
    qk = _row(c, "self_attn.qk")
    # one GEMM per (sequence, KV head): the 4 query heads of a group share the K they read
    assert (qk.m, qk.n, qk.k, qk["count"]) == (4, 1024, 128, 4 * 8)
    assert qk.flops == 2 * 32 * 128 * 1024 * 4
    assert qk.kv_read == 4 * 1024 * 8 * 128 and qk.kv_write == 4 * 8 * 128


def test_prefill_linear_and_causal_attention():
    c = counts(build_optable(load_model("llama-2-7b")), batch=2, q=512, past=0)
    q = _row(c, "self_attn.q_proj")
    assert (q.m, q.n, q.k) == (1024, 4096, 4096) and q.flops == 2 * 1024 * 4096 * 4096
    av = _row(c, "self_attn.av")
    assert av.flops == 2 * 32 * 128 * 2 * (512 * 513 / 2)  # causal: position j attends j keys
    head = _row(c, "lm_head")
    assert head.m == 2  # prefill computes logits of the last token of each sequence


def test_attended_pairs_window():
    assert attended_pairs(0, 4, 0) == 10
    assert attended_pairs(0, 6, 4) == 1 + 2 + 3 + 4 + 4 + 4
    assert attended_pairs(10, 2, 4) == 8
    assert attended_pairs(2, 3, 4) == 3 + 4 + 4


def test_moe_rows():
    spec = load_model("mixtral-8x7b")
    t = build_optable(spec)
    experts = t[t.role == "expert"]
    assert len(experts) == 3 and (experts.row_experts == 8).all()
    assert "model.layers.{i}.block_sparse_moe.experts.{e}.w1" in set(experts.name)
    one = counts(t, batch=1, q=1, past=99)
    w1 = one[one.name.str.endswith("experts.{e}.w1")].iloc[0]
    assert w1["count"] == pytest.approx(2.0)  # one token touches top-2 of 8 experts
    assert w1.flops == pytest.approx(2 * 2 * 14336 * 4096)
    many = counts(t, batch=64, q=512, past=0)
    w1 = many[many.name.str.endswith("experts.{e}.w1")].iloc[0]
    assert w1["count"] == pytest.approx(8.0)  # every expert is busy
    assert w1.m == pytest.approx(64 * 512 * 2 / 8)


def test_gemma2_alternating_windows_split_attention_rows():
    spec = load_model("gemma-2-9b")
    t = build_optable(spec)
    qk = t[t.name.str.endswith("self_attn.qk")]
    assert sorted(qk.window) == [0, 4096]
    assert sorted(len(x) for x in qk.layers) == [21, 21]
    assert len(t[t.name.str.endswith("q_proj")]) == 1  # linear rows are not split
    c = counts(t, batch=1, q=1, past=8000)
    reads = sorted(c[c.name.str.endswith("self_attn.qk")].kv_read)
    assert reads == [4096 * 8 * 256, 8001 * 8 * 256]


def test_op_names_follow_hf_module_paths():
    names = set(op_names(build_optable(load_model("llama-2-7b"))))
    assert {"model.layers.0.self_attn.q_proj", "model.layers.31.mlp.down_proj", "model.layers.3.self_attn.qk",
            "model.layers.3.self_attn.av", "lm_head"} <= names
    assert len(names) == 32 * 9 + 1
    opt = set(op_names(build_optable(load_model("opt-125m"))))
    assert {"model.decoder.layers.0.self_attn.out_proj", "model.decoder.layers.11.fc2"} <= opt
    mix = set(op_names(build_optable(load_model("mixtral-8x7b"))))
    assert "model.layers.5.block_sparse_moe.experts.7.w2" in mix and "model.layers.5.block_sparse_moe.gate" in mix


def test_identical_layers_collapsed(llama7b):
    t = build_optable(llama7b)
    assert (t[t.layers.map(len) > 0].repeat == 32).all()
    assert len(t) < 25


def test_local_config_path(tmp_path):
    cfg = {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 256,
           "tie_word_embeddings": True}
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    for path in (d, d / "config.json"):
        spec = load_model(str(path))
        assert spec.name == "tiny" and spec.kv_heads == 2
    # q/k/v biases (Qwen2) + norms + embedding, tied head
    per_layer = (64 * 64 + 64) + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert total_params(build_optable(spec)) == 2 * per_layer + 100 * 64 + 64


@pytest.mark.parametrize("cfg,msg", [
    ({"model_type": "bert"}, "unsupported model_type"),
    ({"model_type": "llama", "hidden_size": 64}, "num_hidden_layers"),
    ({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 6,
      "num_key_value_heads": 4, "vocab_size": 10, "max_position_embeddings": 8}, "not a multiple"),
    ({"model_type": "llama", "hidden_size": -1}, "positive integer"),
])
def test_bad_configs(tmp_path, cfg, msg):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=msg):
        load_model(str(p))


def test_unknown_model_lists_choices():
    with pytest.raises(InputError, match="llama-2-7b"):
        load_model("llama-9")


def test_malformed_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        load_model(str(p))


def _cfg_file(tmp_path, cfg, name="m"):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def test_opt_350m_projections(tmp_path):
    # facebook/opt-350m: 1024 hidden, 512-wide embeddings projected in and out (331M parameters)
    cfg = {"model_type": "opt", "hidden_size": 1024, "ffn_dim": 4096, "num_hidden_layers": 24,
           "num_attention_heads": 16, "vocab_size": 50272, "max_position_embeddings": 2048,
           "word_embed_proj_dim": 512, "do_layer_norm_before": False, "tie_word_embeddings": True}
    t = build_optable(load_model(_cfg_file(tmp_path, cfg, "opt-350m")))
    assert {"model.decoder.project_in", "model.decoder.project_out"} <= set(t.name)
    assert abs(total_params(t) / 331.2e6 - 1) < 0.005
    assert t[t.role == "lm_head"].iloc[0].k == 512


def test_mistral_sliding_window_and_gemma1(tmp_path):
    mistral = {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
               "max_position_embeddings": 32768, "sliding_window": 4096, "tie_word_embeddings": False}
    spec = load_model(_cfg_file(tmp_path, mistral, "mistral-7b"))
    assert set(spec.window) == {4096}
    assert abs(total_params(build_optable(spec)) / 7.24e9 - 1) < 0.005  # Mistral-7B-v0.1: 7.24B
    gemma = {"model_type": "gemma", "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
             "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "vocab_size": 256000,
             "max_position_embeddings": 8192, "hidden_act": "gelu"}
    t = build_optable(load_model(_cfg_file(tmp_path, gemma, "gemma-7b")))
    q = t[t.name.str.endswith("q_proj")].iloc[0]
    assert (q.n, q.k) == (16 * 256, 3072)  # head_dim x heads != hidden
    assert abs(total_params(t) / 8.54e9 - 1) < 0.005  # gemma-7b: 8.54B


@settings(max_examples=200, deadline=None)
@given(batch=st.integers(1, 512), q=st.integers(1, 4096), past=st.integers(0, 8192),
       model=st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "gemma-2-2b", "gpt2"]))
def test_counts_are_consistent(batch, q, past, model):
    t = build_optable(load_model(model))
    c = counts(t, batch, q, past)
    assert (c[["flops", "in_elems", "out_elems", "kv_read", "kv_write"]] >= 0).all().all()
    gemm = c[c.kind.isin([0, 1])]  # linear and expert rows: FLOPs = 2 x rows x N x K x GEMMs
    assert np.allclose(gemm.flops, 2 * gemm.m * gemm.n * gemm.k * gemm["count"])
    more = counts(t, batch + 1, q, past + 1)
    assert (more.flops.to_numpy() >= c.flops.to_numpy()).all()
    attn = c[c.kind == 2]
    assert (attn.n <= past + q).all()  # never more keys than the context holds
