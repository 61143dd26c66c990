"""sim.sweep: a YAML grid -> one table, written as it goes; kill -9 and resume; backends agree."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from mpqsim import InputError
from sim.sweep import load_spec, run_sweep

SPEC = """models: [llama-2-7b, llama-3.1-70b]
devices: [h100-sxm, a100-80gb]
precisions: [bf16, fp8]
batches: [1, 8, 64]
prompts: [512]
contexts: [1024]
layouts: [{tp: 1}, {tp: 2}, {tp: 3}]
power_caps: [null, 500]
"""


def _spec(tmp_path, text=SPEC):
    p = tmp_path / "spec.yaml"
    p.write_text(text)
    return load_spec(p)


def test_sweep_table_and_resume(tmp_path):
    spec = _spec(tmp_path)
    full = run_sweep(spec, tmp_path / "a")
    assert len(full) == spec.points == 2 * 2 * 2 * 3 * 2 * 3
    bad = full[full.tp == 3]
    assert (~bad.fits).all() and bad.error.str.contains("cannot split evenly").all()  # 32/64 heads over 3
    ok = full[full.tp == 1]
    assert ok.error.eq("").all() and ok.decode_ms.gt(0).all()
    # a run that died midway: some parts missing, a stray temporary file: the rerun fills in the rest
    parts = sorted((tmp_path / "a" / "parts").glob("*.parquet"))
    for p in parts[::3]:
        p.unlink()
    (tmp_path / "a" / "parts" / ".000007.123.tmp").write_bytes(b"half a file")
    again = run_sweep(spec, tmp_path / "a")
    pd.testing.assert_frame_equal(again, full)
    assert not list((tmp_path / "a" / "parts").glob(".*.tmp"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "results.parquet"), full)


def test_process_backend_gives_the_same_table(tmp_path):
    spec = _spec(tmp_path)
    a = run_sweep(spec, tmp_path / "a")
    b = run_sweep(spec, tmp_path / "b", backend="process", workers=2)
    pd.testing.assert_frame_equal(a, b)


def test_ray_backend_gives_the_same_table(tmp_path):
    """On a local Ray instance the test starts (two CPUs), then against it by address, then resumed."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mpqsim[ray]')")
    spec = _spec(tmp_path)
    a = run_sweep(spec, tmp_path / "a")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        b = run_sweep(spec, tmp_path / "b", backend="ray")
        pd.testing.assert_frame_equal(a, b)
        for p in sorted((tmp_path / "b" / "parts").glob("*.parquet"))[::2]:
            p.unlink()
        c = run_sweep(spec, tmp_path / "b", backend="ray")   # resumed on Ray: only the missing chunks
        pd.testing.assert_frame_equal(a, c)
    finally:
        ray.shutdown()
    with pytest.raises(InputError, match="needs --backend ray"):
        run_sweep(spec, tmp_path / "c", address="auto")


def test_generated_design_variants_in_a_sweep(tmp_path):
    spec = _spec(tmp_path, """models: [llama-2-7b]
designs: [{base: custom-mx, vary: {sram_mb: [32, 64], memory.stacks: [4, 6]}}]
precisions: [bf16]
batches: [1]
""")
    assert len(spec.devices) == 4 and spec.devices[0] == "custom-mx[sram_mb=32,memory.stacks=4]"
    df = run_sweep(spec, tmp_path / "d")
    assert len(df) == 4 and df.area_mm2.notna().all() and df.capacity_gb.nunique() == 2
    with pytest.raises(InputError, match="designs.vary"):
        _spec(tmp_path, "models: [llama-2-7b]\ndesigns: [{base: custom-mx, vary: {sram_mb: 32}}]\nprecisions: [bf16]\nbatches: [1]\n")


def test_serving_settings_in_a_sweep(tmp_path):
    text = """models: [llama-2-7b]
devices: [h100-sxm, a100-80gb]
precisions: [bf16, fp8]
batches: [1]
prompts: [256]
layouts: [{tp: 1}, {tp: 3}]
serving: {qps: [2, 8], requests: 60, output: 32, slo_ttft: 1.0, slo_tpot: 0.05}
"""
    spec = _spec(tmp_path, text)
    run_sweep(spec, tmp_path / "s")
    srv = pd.read_parquet(tmp_path / "s" / "serving.parquet")
    assert len(srv) == 2 * 2 * 2 * 2  # layouts x devices x precisions x rates
    ok = srv[srv.tp == 1]
    assert ok.error.eq("").all() and ok.ttft_p99_s.gt(0).all() and (ok.slo_attainment > 0.9).all()
    assert srv[srv.tp == 3].error.str.contains("cannot split evenly").all()
    # a serving part lost to a kill: that chunk is redone, the tables are the same
    (tmp_path / "s" / "sparts" / "000001.parquet").unlink()
    run_sweep(spec, tmp_path / "s")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s" / "serving.parquet"), srv)
    with pytest.raises(InputError, match="serving has unknown key"):
        _spec(tmp_path, text.replace("requests: 60", "reqs: 60"))
    with pytest.raises(InputError, match="serving.qps"):
        _spec(tmp_path, text.replace("qps: [2, 8]", "qps: [0]"))


def test_a_different_spec_in_the_same_folder_is_refused(tmp_path):
    run_sweep(_spec(tmp_path), tmp_path / "a")
    other = _spec(tmp_path, SPEC.replace("[1, 8, 64]", "[1, 2]"))
    with pytest.raises(InputError, match="different sweep"):
        run_sweep(other, tmp_path / "a")


def test_kill_9_midway_then_resume_equals_uninterrupted(tmp_path):
    text = SPEC.replace("prompts: [512]", "prompts: [" + ", ".join(str(128 * i) for i in range(1, 13)) + "]")
    spec = _spec(tmp_path, text)
    ref = run_sweep(spec, tmp_path / "ref")
    cmd = [sys.executable, "-m", "mpqsim.cli", "sweep", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "k")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "k" / "parts"
    deadline = time.time() + 120
    while time.time() < deadline and (not parts.is_dir() or len(list(parts.glob("*.parquet"))) < 20):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_done = len(list(parts.glob("*.parquet")))
    assert 0 < n_done < len(spec.chunks)  # killed midway
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "k" / "results.parquet"), ref)
