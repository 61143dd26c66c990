"""Serving-simulator speed: simulated seconds per wall second on one core.

Run: ``python benchmarks/serving_speed.py`` (prints; records ``benchmarks/results/serving_speed.json``).
Scenario (issue 5): Llama-2-7B on one A100-80GB, bf16, vLLM scheduler, batch cap 128, 4096
batched tokens, Poisson 2 and 6 requests/s, 1000 requests, prompt 512 / output 128, seed 42.
Target: >= 500x real time at 6 qps (a profiled peer simulator runs this scenario at about 50x).
Best of 3 runs after a warm-up (JIT) run; the simulator is single-threaded.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from hwmodels import load_device
from quant.precision import preset_map
from sim.serving import ServingConfig, simulate
from sim.workload_gen import Lengths, synthetic
from workloads import load_model

RESULTS = Path(__file__).parent / "results" / "serving_speed.json"


def main() -> None:
    spec, dev, pmap = load_model("llama-2-7b"), load_device("a100-80gb"), preset_map("bf16")
    cfg = ServingConfig(scheduler="vllm", max_batch=128, max_tokens=4096)
    simulate(spec, dev, pmap, synthetic(20, 6, Lengths(512), Lengths(128), seed=42), cfg)  # warm-up
    out = {}
    for qps in (2, 6):
        reqs = synthetic(1000, qps, Lengths(512), Lengths(128), seed=42)
        best, summary = float("inf"), None
        for _ in range(3):
            t0 = time.perf_counter()
            _, summary = simulate(spec, dev, pmap, reqs, cfg)
            best = min(best, time.perf_counter() - t0)
        out[str(qps)] = dict(wall_s=best, simulated_s=summary["duration_s"],
                             realtime_factor=summary["duration_s"] / best,
                             iterations_per_s=summary["iterations"] / best, summary=summary)
        print(f"{qps} qps: {summary['duration_s']:.1f} simulated s in {best:.3f} wall s = "
              f"{summary['duration_s'] / best:.0f}x real time, {summary['iterations'] / best:,.0f} iterations/s; "
              f"throughput {summary['requests_per_s']:.2f} req/s, {summary['output_tokens_per_s']:.0f} tok/s, "
              f"TTFT p50/p99 {1e3 * summary['ttft_p50_s']:.1f}/{1e3 * summary['ttft_p99_s']:.1f} ms, "
              f"TPOT p50/p99 {1e3 * summary['tpot_p50_s']:.2f}/{1e3 * summary['tpot_p99_s']:.2f} ms, "
              f"mean batch {summary['batch_mean']:.1f}, KV use {100 * summary['kv_util_mean']:.1f} %, "
              f"MFU {100 * summary['mfu']:.1f} %")
    RESULTS.write_text(json.dumps(dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version()),
        scenario="llama-2-7b, a100-80gb, bf16, vllm, max_batch 128, max_tokens 4096, Poisson, 1000 requests, "
                 "prompt 512, output 128, seed 42", runs=out, target_realtime_factor_at_6qps=500), indent=1) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
