"""The cost model's core: named registries, kernels that agree with the op tables, the interpreted
path, the golden sweep, and a file cache that never serves stale code."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwmodels import bundled_devices, load_device
from mpqsim import InputError
from quant.precision import preset_map
from sim import fields
from sim.costmodel import N_TERMS, N_TOTALS, assign, configs, lower, price, price_kernel
from sim.jit import as_rows, interpreted, kernel_sources
from sim.lowering import KERNEL_NAMES
from workloads import load_model
from workloads.optable import KIND_NAMES, counts

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["llama-2-7b", "mixtral-8x7b", "gemma-2-2b", "opt-125m", "gpt2", "qwen1.5-0.5b"]
PHASES = [(1, 1, 0), (1, 1, 4095), (8, 1, 1023), (3, 512, 0), (2, 128, 4000), (64, 1, 8191)]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("model", MODELS)
def test_kernel_counts_equal_the_op_table_counts(model, fused):
    """What the compiled kernel prices is what workloads.counts() says, for every op kind."""
    spec = load_model(model)
    m = assign(spec, preset_map("w4a16"))
    lw = lower(m, [load_device("h100-sxm")], fused_attention=fused)
    ops = m.ops
    seen = set()
    for b, q, past in PHASES:
        det = price(lw, device=0, batch=b, q=q, past=past, detail=True).detail[0]
        c = counts(m.table, b, q, past)
        for term in ("m", "n", "k", "count", "flops"):
            assert np.array_equal(det[term], c[term].to_numpy()), term
        assert np.array_equal(det["bytes_w"], c.w_elems.to_numpy() * ops["wbytes"] + c.b_elems.to_numpy() * ops["obytes"])
        assert np.array_equal(det["bytes_kv"], (c.kv_read.to_numpy() + c.kv_write.to_numpy()) * ops["kvbytes"])
        mat = lw.per_op["materialise_scores"][0]
        assert np.array_equal(det["bytes_act"], (c.in_elems.to_numpy() + mat * c.score_read.to_numpy()) * ops["abytes"]
                              + (c.out_elems.to_numpy() + mat * c.score_write.to_numpy()) * ops["obytes"])
        seen |= set(c["kind"])
    assert {KIND_NAMES.index(k) for k in ("linear", "qk", "av", "softmax", "vector", "embed")} <= seen
    if spec.routed_experts:
        assert KIND_NAMES.index("expert") in seen


def test_fused_attention_is_decided_in_lowering(llama7b, h100):
    m = assign(llama7b, preset_map("bf16"))
    fused, unfused = lower(m, [h100]), lower(m, [h100], fused_attention=False)
    names = m.names
    qk, sm, av = (names.index(f"model.layers.{{i}}.self_attn.{x}") for x in ("qk", "softmax", "av"))
    assert [fused.per_op["launches"][0][j] for j in (qk, sm, av)] == [1, 0, 0]
    assert [unfused.per_op["launches"][0][j] for j in (qk, sm, av)] == [1, 1, 1]
    assert {fused.kernels(0)[j] for j in (qk, sm, av)} == {"flash_attention"}
    assert [unfused.kernels(0)[j] for j in (qk, sm, av)] == ["attention_gemm", "softmax", "attention_gemm"]
    assert "fused" not in m.table and "launches" not in m.table  # not a workloads fact any more


@pytest.mark.parametrize("precision", ["bf16", "mxint4", "w4a16", "fp8-kv8"])
@pytest.mark.parametrize("model", ["llama-2-7b", "mixtral-8x7b", "gemma-2-2b", "opt-125m"])
def test_interpreted_kernel_gives_the_same_bits(model, precision):
    devices = [load_device(d) for d in bundled_devices()]
    lw = lower(assign(load_model(model), preset_map(precision)), devices, fused_attention=precision != "bf16")
    rng = np.random.default_rng(1)
    n = 25
    cfg = configs(device=rng.integers(0, len(devices), n), batch=rng.integers(1, 300, n),
                  q=rng.integers(1, 3000, n), past=rng.integers(0, 3000, n))
    out = []
    for fn, args in ((price_kernel, (lw.ops, lw.per_op, lw.device, cfg)),
                     (interpreted(price_kernel), as_rows(lw.ops, lw.per_op, lw.device, cfg))):
        tot, det = np.zeros((n, N_TOTALS)), np.zeros((n, len(lw.ops), N_TERMS))
        fn(*args, tot, det)
        out.append((tot, det))
    assert np.array_equal(out[0][0], out[1][0]) and np.array_equal(out[0][1], out[1][1])


def test_golden_sweep_subset_is_bit_identical():
    """The recorded fingerprints (benchmarks/golden_sweep.py; re-recorded only by a change meant to move
    numbers), for a few models."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import golden_sweep
    finally:
        sys.path.pop(0)
    assert golden_sweep.check(["llama-2-7b", "mixtral-8x7b", "gemma-2-2b", "opt-125m"]) == []


def test_registries_generate_the_layouts():
    assert fields.Cost._fields == fields.COST_DTYPE.names == tuple(fields.COST_TERMS)
    assert fields.Counts._fields == tuple(fields.COUNT_FIELDS)
    assert fields.OP_DTYPE.names == (*fields.SHAPE_FIELDS, *fields.FORMAT_FIELDS)
    assert fields.TOTAL_DTYPE.names == tuple(fields.TOTALS)
    for name, (term, rule) in fields.TOTALS.items():
        assert term in fields.COST_TERMS and rule in fields.RULES, name
    with pytest.raises(InputError, match="unknown"):
        fields.records(fields.CONFIG_DTYPE, device=0, batch=1, q=1, past=0, context=5)


def test_cost_table_by_name(llama7b, h100, a100):
    lw = lower(assign(llama7b, preset_map("bf16")), [h100, a100])
    ct = price(lw, device=[0, 1], batch=4, q=1, past=1023, detail=True)
    assert ct["time"].shape == (2,) and ct["op.t_memory"].shape == (2, len(lw.ops))
    # totals are the repeat-weighted sums of the per-op terms
    assert np.allclose(ct["time"], (ct.detail["time"] * ct.repeat).sum(axis=1), rtol=1e-12)
    assert np.allclose(ct["flops"], (ct.detail["flops"] * ct.repeat).sum(axis=1), rtol=1e-12)
    assert np.array_equal(ct["act_peak"], ct.detail["bytes_act"].max(axis=1))
    tot = ct.to_frame()
    assert list(tot.device_name) == ["h100-sxm", "a100-80gb"] and "act_peak" in tot
    per_op = ct.to_frame(per_op=True)
    assert len(per_op) == 2 * len(lw.ops) and set(per_op.kernel) <= set(KERNEL_NAMES)
    with pytest.raises(InputError, match="out of range"):
        price(lw, device=2, batch=1, q=1, past=0)


def test_kernel_cache_is_keyed_on_the_sources_it_inlines(tmp_path):
    """Edit op_counts (in workloads) in a copy of the tree: a fresh process must price the new formula,
    not the kernel cached from the old one (numba alone keys a cache on the kernel's own file)."""
    for pkg in ("mpqsim", "workloads", "quant", "hwmodels", "sim"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    probe = ("import sim, json; from hwmodels import load_device; from quant.precision import preset_map; "
             "from sim.costmodel import assign, lower, price, price_kernel; from workloads import load_model, counts; "
             "m = assign(load_model('llama-2-7b'), preset_map('bf16')); "
             "t = price(lower(m, [load_device('h100-sxm')]), device=0, batch=[64] * 400, q=4096, past=0)['time'][0]; "
             "print(json.dumps(dict(file=sim.__file__, time=float(t), hits=sum(price_kernel.stats.cache_hits.values()), "
             "flops=float(counts(m.table, 1, 1, 0).flops.sum()))))")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NUMBA_CACHE_DIR="")
    env.pop("NUMBA_CACHE_DIR")

    def run():
        out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    # (400 configurations: past the interpreted budget, so the compiled kernel runs)
    first, second = run(), run()
    assert first["file"].startswith(str(tmp_path))
    assert second["hits"] >= 1 and second["time"] == first["time"]  # the cache works
    src = tmp_path / "workloads" / "optable.py"
    text = src.read_text()
    assert "flops = 2.0 * m * n * k" in text
    src.write_text(text.replace("flops = 2.0 * m * n * k", "flops = 4.0 * m * n * k"))
    third = run()
    assert third["flops"] > first["flops"]          # counts() sees the edit ...
    assert third["time"] > 1.5 * first["time"]      # ... and so does the cached kernel (prefill is compute-bound)
    assert src in kernel_sources() or any(p.name == "optable.py" for p in kernel_sources())


def test_memoised_set_up_never_serves_stale_numbers(llama7b):
    """Specs that differ in any number lower differently, even when everything else is equal."""
    m = assign(llama7b, preset_map("w8a8"))
    base = load_device("h100-sxm")
    faster = load_device("h100-sxm", {"peak_tflops.int8": 2 * 1979})
    assert base != faster
    j = m.names.index("model.layers.{i}.mlp.up_proj")
    assert lower(m, [faster]).per_op["rate"][0][j] == pytest.approx(2 * lower(m, [base]).per_op["rate"][0][j], rel=0.01)
    # a map edited in place is a different map
    pm = preset_map("bf16")
    a = assign(llama7b, pm)
    pm.kv_cache = preset_map("fp8-kv8").kv_cache
    assert assign(llama7b, pm).kv_bytes(1, 1024) == pytest.approx(a.kv_bytes(1, 1024) / 2)
