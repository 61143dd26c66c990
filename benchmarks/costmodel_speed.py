"""Cost-model speed: op-configurations priced per second (one thread) and a full sweep's wall time.

Run: ``python benchmarks/costmodel_speed.py`` (prints the figures and records them in
``benchmarks/results/costmodel_speed.json``). Target (issue 2): >= 10 million op-configurations
per second on one thread after JIT warm-up.

1. Kernel throughput: Llama-2-7B (bf16 and mxint4 maps) priced on every bundled device over a grid
   of batch sizes x contexts, both phases; totals only (no per-op detail), one thread (the kernel is
   not parallel). Best of 5 repetitions after a warm-up call.
2. Full sweep, end to end through the library (op tables, map assignment, kernel, summary
   DataFrame): all bundled models x all devices x 9 batch sizes x 5 precisions x both phases.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numba
import numpy as np
import pandas as pd

numba.config.NUMBA_NUM_THREADS = 1  # the kernel is serial anyway; make it explicit

from hwmodels import bundled_devices, load_device  # noqa: E402
from quant.precision import preset_map  # noqa: E402
from sim.costmodel import assign, configs, lower, price  # noqa: E402
from sim.latency import latency_table  # noqa: E402
from workloads import bundled_models, load_model  # noqa: E402

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PRECISIONS = ["bf16", "fp8", "w4a16", "mxint4", "mxfp4"]
RESULTS = Path(__file__).parent / "results" / "costmodel_speed.json"


def kernel_throughput(reps: int = 5) -> dict:
    devices = [load_device(d) for d in bundled_devices()]
    spec = load_model("llama-2-7b")
    contexts = np.arange(1, 4097, 8)
    out = {}
    for prec in ("bf16", "mxint4"):
        lowered = lower(assign(spec, preset_map(prec)), devices)
        d, b, c = np.meshgrid(np.arange(len(devices)), BATCHES, contexts, indexing="ij")
        n = d.size
        # decode (q=1, past=c-1) and prefill (q=c, past=0) configurations
        cfg = configs(device=np.concatenate([d.ravel(), d.ravel()]), batch=np.concatenate([b.ravel(), b.ravel()]),
                      q=np.concatenate([np.ones(n), c.ravel()]), past=np.concatenate([c.ravel() - 1, np.zeros(n)]))
        price(lowered, cfg[:10])  # JIT warm-up
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            price(lowered, cfg)
            best = min(best, time.perf_counter() - t0)
        op_cfgs = len(cfg) * len(lowered.ops)
        out[prec] = dict(configurations=len(cfg), ops=len(lowered.ops), op_configurations=op_cfgs,
                         seconds=best, op_configurations_per_s=op_cfgs / best)
    return out


def full_sweep() -> dict:
    devices = [load_device(d) for d in bundled_devices()]
    maps = [preset_map(p) for p in PRECISIONS]
    models = bundled_models()
    t0 = time.perf_counter()
    frames = [latency_table(load_model(m), devices, maps, BATCHES, 1024, 1024) for m in models]
    wall = time.perf_counter() - t0
    df = pd.concat(frames, ignore_index=True)
    return dict(models=len(models), devices=len(devices), batches=len(BATCHES), precisions=len(PRECISIONS),
                phases=2, rows=len(df), wall_s=wall, fits=int(df.fits.sum()))


def main() -> None:
    kt = kernel_throughput()
    sweep = full_sweep()
    rec = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                            cpus=os.cpu_count(), python=platform.python_version(), numba=numba.__version__,
                            numpy=np.__version__),
               kernel_one_thread=kt, full_sweep=sweep, target_op_configurations_per_s=10e6)
    for prec, r in kt.items():
        print(f"kernel ({prec}): {r['op_configurations']:,} op-configurations "
              f"({r['configurations']:,} configs x {r['ops']} ops) in {r['seconds'] * 1e3:.1f} ms "
              f"= {r['op_configurations_per_s'] / 1e6:.1f} M op-configurations/s on one thread")
    print(f"full sweep: {sweep['models']} models x {sweep['devices']} devices x {sweep['batches']} batches x "
          f"{sweep['precisions']} precisions x 2 phases -> {sweep['rows']:,} summary rows in {sweep['wall_s']:.2f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
