"""Speed of `mpqsim sweep` (sim.sweep): design points per second, in-process and with a process pool.

Run: ``python benchmarks/sweep_speed.py [--million]``: every bundled device x 2 models x 5 precisions
x 4 prompt lengths x 9 batch sizes, written to a temporary folder, in-process and with a process
pool; ``--million`` adds a sweep of every bundled model x device x 5 precisions x 9 batches x 8
prompts x 4 contexts x 3 power caps (1.46 million design points, process pool). Records
``benchmarks/results/sweep_speed.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import argparse

    from hwmodels import bundled_devices
    from sim.sweep import load_spec, run_sweep
    from workloads import bundled_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--million", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        spec_path = Path(d) / "spec.yaml"
        spec_path.write_text(
            "models: [llama-2-7b, qwen1.5-7b]\n"
            f"devices: [{', '.join(bundled_devices())}]\n"
            "precisions: [bf16, fp8, w4a16, mxint4, mxfp4]\n"
            "batches: [1, 2, 4, 8, 16, 32, 64, 128, 256]\n"
            "prompts: [256, 512, 1024, 2048]\ncontexts: [2048]\n")
        spec = load_spec(spec_path)
        res = dict(points=spec.points, chunks=len(spec.chunks), cpus=os.cpu_count())
        for backend in ("inprocess", "process"):
            t = time.perf_counter()
            table = run_sweep(spec, Path(d) / backend, backend=backend)
            secs = time.perf_counter() - t
            res[backend] = dict(seconds=secs, points_per_s=len(table) / secs)
            print(f"{backend}: {len(table):,} design points ({len(spec.chunks):,} chunks) in {secs:.1f} s = "
                  f"{len(table) / secs:,.0f} points/s", flush=True)
        if args.million:
            big = Path(d) / "big.yaml"
            big.write_text(
                f"models: [{', '.join(bundled_models())}]\n"
                f"devices: [{', '.join(bundled_devices())}]\n"
                "precisions: [bf16, fp8, w4a16, mxint4, mxfp4]\n"
                "batches: [1, 2, 4, 8, 16, 32, 64, 128, 256]\n"
                "prompts: [128, 256, 512, 1024, 2048, 4096, 8192, 16384]\ncontexts: [1024, 2048, 4096, 8192]\n"
                "power_caps: [null, 400, 300]\n")
            spec = load_spec(big)
            t = time.perf_counter()
            table = run_sweep(spec, Path(d) / "big", backend="process")
            secs = time.perf_counter() - t
            res["million"] = dict(points=len(table), chunks=len(spec.chunks), seconds=secs,
                                  points_per_s=len(table) / secs, backend="process", fits=int(table.fits.sum()))
            print(f"million: {len(table):,} design points ({len(spec.chunks):,} chunks) in {secs:.1f} s = "
                  f"{len(table) / secs:,.0f} points/s (process pool)", flush=True)
    (ROOT / "benchmarks" / "results" / "sweep_speed.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
