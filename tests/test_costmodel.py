import numpy as np
import pytest

from hwmodels import bundled_devices, load_device
from mpqsim import InputError
from quant.precision import OpFormats, PrecisionMap, preset_map
from sim.costmodel import assign, lower, price
from sim.latency import check_fit, latency_table, per_op_table
from sim.lowering import compute_unit
from workloads import load_model


def test_done_when_llama2_7b(llama7b, a100, h100):
    df = latency_table(llama7b, [a100, h100], [preset_map("fp16"), preset_map("w4a16")], [1, 8, 64], 1024, 1024)
    fp16 = df[df.precision == "fp16"]
    assert fp16.weights_gb.round(2).eq(13.48).all()
    b1 = fp16[fp16.batch == 1]
    assert b1.kv_gb.round(3).eq(0.537).all()  # 0.537 GB per sequence at 1024 tokens
    assert (b1.decode_bound == "memory").all() and (b1.prefill_bound == "compute").all()
    assert (df[df.batch == 64].kv_gb.round(2) == 34.36).all()
    # weight-only 4-bit helps the memory-bound decode, not the compute-bound prefill
    w4 = df[df.precision == "w4a16"].set_index(["device", "batch"])
    f16 = fp16.set_index(["device", "batch"])
    assert (w4.decode_ms < f16.decode_ms).all()
    assert (w4.prefill_ms >= 0.99 * f16.prefill_ms).all()  # compute-bound: a weight-only kernel is no faster


def test_per_op_explains_the_totals(llama7b, h100):
    ops = per_op_table(llama7b, h100, preset_map("fp16"), 1, 1024, 1024)
    summary = latency_table(llama7b, [h100], [preset_map("fp16")], [1], 1024, 1024).iloc[0]
    for phase, col in (("prefill", "prefill_ms"), ("decode", "decode_ms")):
        p = ops[ops.phase == phase]
        assert p.total_us.sum() / 1e3 == pytest.approx(summary[col])
        assert p.share.sum() == pytest.approx(1.0)
    dec = ops[ops.phase == "decode"].set_index("op")
    q = dec.loc["model.layers.{i}.self_attn.q_proj"]
    assert (q.M, q.N, q.K, q.bound) == (1, 4096, 4096, "memory")
    assert q.weight_mb == pytest.approx(4096 * 4096 * 2 / 1e6)


def test_precision_rule_w4a16_mx_on_h100(llama7b, h100):
    model = assign(llama7b, preset_map("w4a16-mx"))
    lw = lower(model, [h100])
    units = dict(zip(model.names, lw.units(0)))
    kernels = dict(zip(model.names, lw.kernels(0)))
    assert units["model.layers.{i}.self_attn.q_proj"] == "bf16"  # up-cast: Hopper has no MXINT4 unit
    assert kernels["model.layers.{i}.self_attn.q_proj"] == "marlin"  # weight-only default
    t = model.table.set_index("name")
    j = model.names.index("model.layers.{i}.self_attn.q_proj")
    assert model.ops["wbytes"][j] == pytest.approx(4.25 / 8)  # reads 4.25-bit weights (4 + 8/32)
    det = price(lw, device=0, batch=1, q=1, past=1023, detail=True).detail
    assert det["bytes_w"][0, j] == pytest.approx(4096 * 4096 * 4.25 / 8)
    assert t.loc["lm_head", "weight_fmt"] == "bf16"
    assert kernels["lm_head"] == "cublas" and kernels["model.layers.{i}.self_attn.qk"] == "flash_attention"


@pytest.mark.parametrize("dev,w,a,unit", [
    ("h100-sxm", "mxint4_32", "bf16", "bf16"),
    ("h100-sxm", "int8_chan", "int8_tens", "int8"),
    ("h100-sxm", "fp8_e4m3", "fp8_e4m3", "fp8"),
    ("a100-80gb", "fp8_e4m3", "fp8_e4m3", "bf16"),     # Ampere has no FP8 unit
    ("a100-80gb", "int4_chan", "int4_tens", "int4"),
    ("a100-80gb", "int4_chan", "int8_tens", "int8"),   # int4 weights enter the INT8 unit exactly
    ("a100-80gb", "int4_g128", "int8_tens", "bf16"),   # group scales: dequantize first
    ("b200", "mxfp4_e2m1_32", "mxfp4_e2m1_32", "mxfp4"),
    ("b200", "mxfp4_e2m1_32", "mxfp8_e4m3_32", "mxfp8"),
    ("b200", "mxint4_32", "mxint4_32", "bf16"),
    ("custom-mx", "mxint4_32", "mxint4_32", "mxint4"),
    ("custom-mx", "mxint4_32", "mxint8_32", "mxint8"),
    ("h100-sxm", "fp32", "bf16", "fp32"),
])
def test_compute_unit_rule(dev, w, a, unit):
    assert compute_unit(load_device(dev), w, a) == unit


@pytest.mark.parametrize("model", ["llama-2-7b", "mixtral-8x7b", "gemma-2-2b", "opt-125m", "qwen1.5-32b"])
@pytest.mark.parametrize("precision", ["bf16", "w4a16", "mxint4", "fp8"])
def test_monotone_in_batch_and_context(model, precision):
    spec = load_model(model)
    devices = [load_device(d) for d in bundled_devices()]
    lw = lower(assign(spec, preset_map(precision)), devices)
    batches = np.array([1, 2, 3, 8, 16, 17, 64, 128, 512])
    contexts = np.array([1, 2, 100, 1000, 2047, 2048])
    for d in range(len(devices)):
        for q in (1, 16, 256):
            grid_b, grid_c = np.meshgrid(batches, contexts, indexing="ij")
            ct = price(lw, device=d, batch=grid_b.ravel(), q=q, past=grid_c.ravel(), detail=True)
            t = ct["time"].reshape(grid_b.shape)
            assert (np.diff(t, axis=0) >= -1e-15).all(), "time fell as batch grew"
            assert (np.diff(t, axis=1) >= -1e-15).all(), "time fell as context grew"
            per_op = ct.detail["time"].reshape(*grid_b.shape, -1)
            assert (np.diff(per_op, axis=0) >= -1e-15).all() and (np.diff(per_op, axis=1) >= -1e-15).all()


@pytest.mark.parametrize("precision", ["bf16", "w4a16-mx", "mxfp4", "w8a8", "fp8-kv8"])
def test_roofline_floor(precision):
    """No op is faster than its DRAM bytes at peak bandwidth (an op's activations that fit in the L2,
    per kernel, are not DRAM bytes) or its FLOPs at its unit's peak."""
    spec = load_model("llama-3.1-8b")
    devices = [load_device(d) for d in bundled_devices()]
    lw = lower(assign(spec, preset_map(precision)), devices)
    cfgs = [(d, b, q, p) for d in range(len(devices)) for b in (1, 32) for q, p in ((1, 4095), (2048, 0))]
    d_, b_, q_, p_ = zip(*cfgs)
    det = price(lw, device=d_, batch=b_, q=q_, past=p_, detail=True).detail
    for c, d in enumerate(d_):
        dev = devices[d]
        peak = np.array([dev.vector_flops if u == "vector" else dev.peak(u) for u in lw.units(d)])
        row = det[c]
        pieces = np.maximum(1.0, lw.per_op["launches"][d])
        on_chip = np.where(row["bytes_act"] <= dev.l2_bytes * pieces, row["bytes_act"], 0.0)
        dram = row["bytes_w"] + row["bytes_act"] + row["bytes_kv"] - on_chip
        assert (row["time"] >= dram / dev.bandwidth - 1e-18).all()
        gemm = lw.per_op["occupancy"][d] == 0  # every kernel without an occupancy roof streams all it moves
        assert (row["time"][gemm] >= (row["bytes_w"] + row["bytes_act"] + row["bytes_kv"])[gemm] / dev.bandwidth
                - 1e-18).all()
        assert (row["time"] >= row["flops"] / peak - 1e-18).all()


def test_kv_capacity_follows_kv_format(llama7b):
    bf16 = assign(llama7b, preset_map("bf16")).kv_bytes(1, 1024)
    fp8 = assign(llama7b, preset_map("fp8-kv8")).kv_bytes(1, 1024)
    mx4 = assign(llama7b, preset_map("mxint4")).kv_bytes(1, 1024)
    assert fp8 == pytest.approx(bf16 / 2) and mx4 == pytest.approx(bf16 * 4.25 / 16)


def test_sliding_window_caps_kv():
    spec = load_model("gemma-2-2b")
    p = assign(spec, preset_map("bf16"))
    per_tok = 26 * 2 * 4 * 256 * 2  # layers x (K,V) x kv_heads x head_dim x bytes
    assert p.kv_bytes(1, 4096) == pytest.approx(per_tok * 4096)
    assert p.kv_bytes(1, 8192) == pytest.approx(per_tok * (8192 + 4096) / 2)  # half the layers keep 4096


def test_memory_fit_error():
    spec = load_model("llama-3.1-405b")
    dev = load_device("a100-40gb")
    row = latency_table(spec, [dev], [preset_map("bf16")], [1], 1024, 1024).iloc[0]
    assert not row.fits and row.weights_gb > 800
    with pytest.raises(InputError, match=r"needs .* GB but a100-40gb has 40 GB \(short by"):
        check_fit(spec, dev, preset_map("bf16"), row.total_gb * 1e9)


def test_unfused_attention_materialises_scores(llama7b, h100):
    fused = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 4096, 4096).iloc[0]
    unfused = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 4096, 4096,
                            fused_attention=False).iloc[0]
    assert unfused.act_gb > 1.0 > fused.act_gb  # 32 heads x 4096^2 scores in bf16 = 1.07 GB
    assert unfused.prefill_ms > fused.prefill_ms


def test_chunked_prefill_costs_at_least_unchunked(llama7b, h100):
    one = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 2048, 2048).iloc[0]
    chunked = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 2048, 2048, chunk=512).iloc[0]
    assert chunked.prefill_ms > one.prefill_ms


@pytest.mark.parametrize("kw,msg", [
    (dict(batches=[0]), "positive integer"),
    (dict(context=5000), "exceeds llama-2-7b's maximum context of 4096"),
    (dict(prompt=0), "must be > 0"),
    (dict(chunk=-1), "chunk"),
])
def test_bad_shapes(llama7b, h100, kw, msg):
    args = dict(batches=[1], prompt=128, context=128, chunk=None) | kw
    with pytest.raises(InputError, match=msg):
        latency_table(llama7b, [h100], [preset_map("bf16")], args["batches"], args["prompt"], args["context"],
                      chunk=args["chunk"])


def test_eager_launches_cost_more(llama7b, h100):
    g = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 128, 128).iloc[0]
    e = latency_table(llama7b, [h100], [preset_map("bf16")], [1], 128, 128, eager=True).iloc[0]
    assert e.decode_ms > g.decode_ms


@pytest.mark.parametrize("kw", [dict(prompt="1024"), dict(context=1.5), dict(batches=[True]), dict(chunk="x"),
                                dict(batches=[2.0])])
def test_library_refuses_wrong_types_with_input_error(llama7b, h100, kw):
    args = dict(batches=[1], prompt=128, context=128, chunk=None) | kw
    with pytest.raises(InputError):
        latency_table(llama7b, [h100], [preset_map("bf16")], args["batches"], args["prompt"], args["context"],
                      chunk=args["chunk"])


def test_engines_differ_in_launches_and_traffic_only_for_element_wise_ops(llama7b, h100):
    from sim.latency import per_op_table

    fused = per_op_table(llama7b, h100, preset_map("bf16"), 1, 1024, 1024, engine="fused")
    eager = per_op_table(llama7b, h100, preset_map("bf16"), 1, 1024, 1024, engine="eager")
    assert fused.attrs["engine"] == "fused" and eager.attrs["engine"] == "eager"
    vec, qk = fused.kind == "vector", fused.kind == "qk"
    merged = fused.op.str.endswith(("k_proj", "v_proj", "up_proj"))  # folded into q_proj's / gate_proj's GEMM
    same = ~vec & ~qk & ~merged
    assert (eager.total_us[same].to_numpy() == fused.total_us[same].to_numpy()).all()  # GEMMs alike
    assert (eager.total_us[merged].to_numpy() > fused.total_us[merged].to_numpy()).all()  # one launch fewer
    assert (eager.total_us[qk].to_numpy() > fused.total_us[qk].to_numpy()).all()  # more glue kernels per layer
    assert (eager.launches[vec].to_numpy() >= fused.launches[vec].to_numpy()).all()
    assert eager.total_us[vec].sum() > 2 * fused.total_us[vec].sum()
    assert eager.total_us.sum() > 1.1 * fused.total_us.sum()
    dec = eager.phase == "decode"
    launches = (eager.launches * eager.repeat)[dec].sum()
    assert 1100 < launches < 1800  # transformers eager: 1,397-1,692 kernels per measured pass
    assert set(eager[vec].kernel) == {"pointwise"} and {"norm", "rotary", "act"} <= set(fused[vec].kernel)


def test_a_chosen_gemm_kernel_is_used_and_reported(llama7b, h100):
    from sim.latency import latency_table

    pm = [preset_map("w4a16")]
    default = latency_table(llama7b, [h100], pm, [1, 64], 1024, 1024)
    tiny = latency_table(llama7b, [h100], pm, [1, 64], 1024, 1024, kernels={"w4a16": "tinygemm"})
    assert set(default.gemm_kernels) == {"cublas+marlin"} and set(tiny.gemm_kernels) == {"cublas+tinygemm"}
    assert tiny.calibrated.all() and not default.calibrated.any()  # tinygemm is fitted on Hopper, Marlin is not
    # tinygemm: per-row dequantization, so a batch of 64 decodes slower than with a Marlin-class kernel
    assert tiny.decode_ms.iloc[1] > default.decode_ms.iloc[1]


def test_fused_engine_runs_same_input_projections_as_one_gemm(llama7b, a100):
    """vLLM-like engines merge q/k/v and gate/up (sim/engines.yaml merged_gemms): the group pays one
    launch and fixed cost; transformers eager runs each nn.Linear; a map that gives k_proj its own
    format keeps it apart."""
    from sim.assign import assign
    from sim.engines import merge_followers
    from sim.lowering import lower

    m = assign(llama7b, preset_map("bf16"))
    names = [m.rows[j]["name"] for j in merge_followers(m.rows, llama7b.names, "fused")]
    assert names == ["model.layers.{i}.self_attn.k_proj", "model.layers.{i}.self_attn.v_proj", "model.layers.{i}.mlp.up_proj"]
    assert merge_followers(m.rows, llama7b.names, "eager") == []
    fused, eager = lower(m, [a100], engine="fused"), lower(m, [a100], engine="eager")
    lin = m.ops["kind"] == 0
    assert (fused.per_op["launches"][0][lin] * m.ops["repeat"][lin]).sum() == \
        (eager.per_op["launches"][0][lin] * m.ops["repeat"][lin]).sum() - 3 * 32
    k = "model.layers.{i}.self_attn.k_proj"
    apart = PrecisionMap(name="k-fp8", ops={k.format(i=i): OpFormats.of("fp8_e4m3", "fp8_e4m3") for i in range(32)})
    ma = assign(llama7b, apart)
    kept = [ma.rows[j]["name"] for j in merge_followers(ma.rows, llama7b.names, "fused")]
    assert k not in kept and "model.layers.{i}.self_attn.v_proj" in kept
    from dataclasses import replace

    mp = assign(llama7b, replace(preset_map("w4a16"), name="w4a16-proxy", proxy=0.02))
    follow = [mp.rows[j]["name"] for j in merge_followers(mp.rows, llama7b.names, "fused")]
    assert k + ".proxy16" in follow and "model.layers.{i}.mlp.up_proj.proxy16" in follow  # 16-bit parts merge too


def test_a_lone_wave_splits_k_only_when_most_sms_would_idle():
    """split_fill: the k-loop of a wave of few tiles is split over idle SMs only while the split wave
    fills at most 1 / split_fill of them (a tensor-parallel shard's 8 tiles split; a 4096-wide
    GEMV's 64 tiles on 132 SMs do not at split_fill 2)."""
    from dataclasses import replace

    from hwmodels.kernels import kernel_params
    from sim.gemm import price_gemm

    base = replace(kernel_params("cublas", "hopper"), split_k=4.0, kloop_s=3e-9)
    never = replace(base, split_fill=1000.0)   # no wave is ever empty enough
    half = replace(base, split_fill=2.0)
    eager_split = replace(base, split_fill=1.0)

    def t(p, n):
        return float(price_gemm("h100-sxm", [1], n, 8192, "bf16", params=p).t_compute_s[0])

    assert t(half, 512) == pytest.approx(t(never, 512) / 4)          # 8 tiles: split 4 ways
    assert t(half, 4096) == pytest.approx(t(never, 4096))            # 64 tiles fill half of 132: not split
    assert t(eager_split, 4096) == pytest.approx(t(never, 4096) / 2)  # split_fill 1: 2 ways


def test_per_row_dequantization_pays_its_pipeline_fill():
    """dequant_rows: a tinygemm-like kernel dequantizes the weights for every row of m, plus a fill
    of dequant_rows rows a call (so its intercept scales with the matrix, unlike fixed_us)."""
    from dataclasses import replace

    from hwmodels.kernels import kernel_params
    from sim.gemm import price_gemm

    base = replace(kernel_params("tinygemm", "hopper"), dequant=0.2, dequant_rows=0.0)
    fill = replace(base, dequant_rows=2.0)

    def tc(p, m):
        return float(price_gemm("h100-sxm", [m], 4096, 4096, "int4_g128", "bf16", "tinygemm", params=p).t_compute_s[0])

    assert tc(fill, 8) == pytest.approx(tc(base, 8) * (8 + 2) / 8)
