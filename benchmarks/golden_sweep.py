"""The golden sweep: every cost-model number, to prove that a refactoring changed none of them.

Run: ``python benchmarks/golden_sweep.py check`` (compare with the recorded fingerprints) or
``record`` (write them, after a change that is *meant* to move numbers; say so in the commit).

Grid: all bundled models x all bundled devices x 9 batch sizes (1..256) x 5 precisions (bf16, fp8,
w4a16, mxint4, mxfp4) x both phases (prefill of 1024 tokens; one decode step at context 1024).
Per (model, precision): the totals (time, activation peak) and every per-op term of the detail,
each as a SHA-256 of its float64 bytes (bit-identical or not). Recorded in
``benchmarks/results/golden_sweep.json``; first recorded on the cost model of issue 2-5 before
issue 13's refactoring (named records, lowering) and unchanged by it; re-recorded by issue 16
(kernel-aware, calibrated GEMM, element-wise and attention kernels) and by issue 17 (the power cap:
each op runs at the clock its power allows; energy terms added) and issue 18/19 (the k-loop floor
scaled by the stored weight bytes: 4-bit operands on a 16-bit-fitted kernel) and issue 16 again (element-wise
kernels latency-bound: the occupancy roof; activations that fit in the L2, per kernel, are not DRAM bytes),
which move numbers by design.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from hwmodels import bundled_devices, load_device
from quant.precision import preset_map
from sim.costmodel import assign, lower, price
from workloads import bundled_models, load_model

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PRECISIONS = ["bf16", "fp8", "w4a16", "mxint4", "mxfp4"]
PHASES = [(1024, 0), (1, 1023)]  # (q, past): prefill of 1024 tokens, decode at context 1024
#: Per-op terms fingerprinted (the detail terms the cost model had when the golden was first recorded).
DETAIL_TERMS = ("time", "t_compute", "t_memory", "flops", "bytes_w", "bytes_act", "bytes_kv", "m", "energy",
                "clock_time")
RESULTS = Path(__file__).parent / "results" / "golden_sweep.json"


def _h(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()[:16]


def fingerprints(models=None) -> dict:
    devices = [load_device(d) for d in bundled_devices()]
    d, b, p = (g.ravel() for g in np.meshgrid(np.arange(len(devices)), BATCHES, np.arange(2), indexing="ij"))
    q = np.array([PHASES[i][0] for i in p], float)
    past = np.array([PHASES[i][1] for i in p], float)
    out = {}
    for m in models or bundled_models():
        spec = load_model(m)
        for prec in PRECISIONS:
            lw = lower(assign(spec, preset_map(prec)), devices)
            ct = price(lw, device=d, batch=b, q=q, past=past, detail=True)
            key = f"{m}|{prec}"
            out[f"{key}|total"] = _h(ct["time"])
            out[f"{key}|act_peak"] = _h(ct["act_peak"])
            for f in DETAIL_TERMS:
                out[f"{key}|{f}"] = _h(ct.detail[f])
    return out


def check(models=None) -> list[str]:
    """Keys whose fingerprint differs from the recorded one (empty = bit-identical)."""
    rec = json.loads(RESULTS.read_text())["fingerprints"]
    now = fingerprints(models)
    return [k for k, v in now.items() if rec.get(k) != v]


def main(argv) -> int:
    mode = argv[1] if len(argv) > 1 else "check"
    if mode == "record":
        fp = fingerprints()
        RESULTS.write_text(json.dumps(dict(grid=dict(models="all bundled", devices=bundled_devices(), batches=BATCHES,
                                                     precisions=PRECISIONS, phases_q_past=PHASES),
                                           fingerprints=fp), indent=0, sort_keys=True) + "\n")
        print(f"recorded {len(fp)} fingerprints in {RESULTS}")
        return 0
    bad = check()
    n = len(json.loads(RESULTS.read_text())["fingerprints"])
    print(f"golden sweep: {n - len(bad)} of {n} fingerprints bit-identical")
    for k in bad[:20]:
        print(f"  differs: {k}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
