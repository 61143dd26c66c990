"""Per-call cost of a typical question: mpqsim vs llm-analysis 0.2.2, interleaved, median ratio.

Run: ``python benchmarks/api_speed.py`` (prints the figures and records them in
``benchmarks/results/api_speed.json``). Needs llm-analysis, installed without its pins (it pins
transformers < 5 and huggingface-hub < 0.15, which would downgrade the quant extra's; it runs
with the current ones)::

    pip install --no-deps llm-analysis==0.2.2 fire termcolor

1. **Grid, in one process** (issue 13): 2 models (Llama-2-7B, Llama-2-70B) x 2 devices (A100-80GB
   SXM, H100 SXM) x 3 precisions (bf16, W8A8, W4A16) x 9 batch sizes (1..256) x both phases
   (prefill of 1024 tokens, decode at context 1024) = 216 points, from names to numbers:
   mpqsim through ``load_model``, ``load_device``, ``preset_map`` and ``latency_table`` (one call
   per model); llm-analysis through ``infer()`` once per (model, device, precision, batch), which
   returns both phases (72 calls: the comparison least favourable to mpqsim; for points that do not
   fit it raises AssertionError, which is its answer). mpqsim is timed
   *warm* (set-up memoised on content, as for a second question in a session) and *cold* (every
   memo cleared before each run: specs, YAML, op tables and formats rebuilt; the compiled kernel
   already loaded). Each tool runs in a process of its own (as a user's session holds one of them:
   importing llm-analysis imports transformers and torch, which slows everything else in that
   process); requests alternate between the two processes; each request is timed inside its
   process as the median of 5 back-to-back runs (for both tools alike); the figure is the median of
   per-request ratios.
2. **One point as a whole process**: ``mpqsim latency -m llama-2-7b -d h100-sxm -b 1`` vs
   ``python -m llm_analysis.analysis infer`` for the same point, wall time, alternating, median.
   llm-analysis imports transformers (a declared dependency) when it is installed; it is also
   timed with transformers hidden, as it would run without it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "api_speed.json"
MODELS = {"llama-2-7b": "NousResearch_Llama-2-7b-hf", "llama-2-70b": "upstage_Llama-2-70b-instruct-v2"}
DEVICES = {"a100-80gb": "a100-sxm-80gb", "h100-sxm": "h100-sxm-80gb"}
PRECISIONS = {"bf16": "w16a16e16", "w8a8": "w8a8e16", "w4a16": "w4a16e16"}
BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PROMPT = CONTEXT = 1024
REPEAT = 5  # back-to-back repetitions per request (median), for both tools alike
HIDE_TRANSFORMERS = ("import sys, runpy; sys.modules['transformers'] = None; sys.modules['huggingface_hub'] = None; "
                     "sys.argv = ['llm_analysis.analysis'] + sys.argv[1:]; "
                     "runpy.run_module('llm_analysis.analysis', run_name='__main__')")


def mpqsim_grid():
    from hwmodels import load_device
    from quant.precision import preset_map
    from sim.latency import latency_table
    from workloads import load_model

    devices = [load_device(d) for d in DEVICES]
    maps = [preset_map(p) for p in PRECISIONS]
    return [latency_table(load_model(m), devices, maps, BATCHES, PROMPT, CONTEXT) for m in MODELS]


def llm_analysis_grid():
    from llm_analysis.analysis import infer

    out = []
    for m in MODELS.values():
        for d in DEVICES.values():
            for p in PRECISIONS.values():
                for b in BATCHES:
                    try:
                        r = infer(model_name=m, gpu_name=d, dtype_name=p, batch_size_per_gpu=b, seq_len=PROMPT,
                                  num_tokens_to_generate=1, log_level="ERROR")
                        out.append((r["prefill_latency"], r["decode_latency"]))
                    except AssertionError:  # its answer for a point that does not fit in memory
                        out.append(None)
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


WORKER = {
    "mpqsim": "mpqsim_grid",
    "mpqsim_cold": "mpqsim_cold_grid",
    "llm_analysis": "llm_analysis_grid",
}


def mpqsim_cold_grid():
    from sim.costmodel import clear_memos

    clear_memos()  # outside the timing would be fairer to mpqsim; inside, it is timed as part of the run
    return mpqsim_grid()


def worker() -> None:
    """Serve timing requests on stdin: a function name -> its wall time in seconds on stdout."""
    fns = {name: globals()[name] for name in WORKER.values()}
    for line in sys.stdin:
        fn = fns[line.strip()]
        print(json.dumps(statistics.median(_timed(fn) for _ in range(REPEAT))), flush=True)


class _Worker:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, cwd=Path(__file__).parent)

    def time(self, fn_name: str) -> float:
        self.p.stdin.write(fn_name + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def grid(runs: int = 25) -> dict:
    """Each tool in a process of its own (as a user's session would hold one of them); requests
    alternate between the processes."""
    from sim.latency import latency_table  # noqa: F401  (fail early if mpqsim is not importable)

    rows = sum(len(df) for df in mpqsim_grid())
    workers = {k: _Worker() for k in ("mpqsim", "llm_analysis")}
    try:
        for _ in range(3):  # warm-up: compiled kernel loaded, memos filled, caches warm
            workers["mpqsim"].time(WORKER["mpqsim"])
            workers["llm_analysis"].time(WORKER["llm_analysis"])
        t_warm, t_cold, t_la = [], [], []
        for _ in range(runs):
            t_la.append(workers["llm_analysis"].time(WORKER["llm_analysis"]))
            t_warm.append(workers["mpqsim"].time(WORKER["mpqsim"]))
            t_cold.append(workers["mpqsim"].time(WORKER["mpqsim_cold"]))
    finally:
        for w in workers.values():
            w.close()
    ratio = lambda a: statistics.median(x / y for x, y in zip(t_la, a))  # noqa: E731
    return dict(points=rows * 2, llm_analysis_calls=len(MODELS) * len(DEVICES) * len(PRECISIONS) * len(BATCHES),
                runs=runs, llm_analysis_ms=statistics.median(t_la) * 1e3,
                mpqsim_warm_ms=statistics.median(t_warm) * 1e3, mpqsim_cold_ms=statistics.median(t_cold) * 1e3,
                speedup_warm=ratio(t_warm), speedup_cold=ratio(t_cold))


def process(runs: int = 7) -> dict:
    mp = ["mpqsim", "latency", "-m", "llama-2-7b", "-d", "h100-sxm", "-b", "1", "--prompt", str(PROMPT),
          "--context", str(CONTEXT)]
    la_args = ["infer", "--model_name", MODELS["llama-2-7b"], "--gpu_name", DEVICES["h100-sxm"], "--dtype_name",
               "w16a16e16", "--batch_size_per_gpu", "1", "--seq_len", str(PROMPT), "--num_tokens_to_generate", "1",
               "--log_level", "ERROR"]
    cmds = dict(mpqsim=mp, llm_analysis=[sys.executable, "-m", "llm_analysis.analysis", *la_args],
                llm_analysis_no_transformers=[sys.executable, "-c", HIDE_TRANSFORMERS, *la_args])
    times = {k: [] for k in cmds}
    for k, c in cmds.items():  # warm the OS file cache and the kernel cache
        subprocess.run(c, capture_output=True, check=True)
    for _ in range(runs):
        for k, c in cmds.items():
            t0 = time.perf_counter()
            subprocess.run(c, capture_output=True, check=True)
            times[k].append(time.perf_counter() - t0)
    return {f"{k}_s": statistics.median(v) for k, v in times.items()} | dict(runs=runs)


def main() -> None:
    if "--worker" in sys.argv:
        return worker()
    try:
        import llm_analysis  # noqa: F401
    except ImportError:
        sys.exit("llm-analysis is not installed: pip install --no-deps llm-analysis==0.2.2 fire termcolor")
    g = grid()
    p = process()
    import numba
    import pandas

    rec = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version(),
                            numba=numba.__version__, pandas=pandas.__version__),
               grid=g, one_point_process=p, target=dict(grid_speedup=10.0, process="mpqsim_s <= llm_analysis_s"))
    print(f"grid of {g['points']} points: llm-analysis {g['llm_analysis_ms']:.1f} ms ({g['llm_analysis_calls']} calls); "
          f"mpqsim {g['mpqsim_warm_ms']:.2f} ms warm = {g['speedup_warm']:.1f}x, {g['mpqsim_cold_ms']:.2f} ms cold = "
          f"{g['speedup_cold']:.1f}x (median of {g['runs']} interleaved runs)")
    print(f"one point, whole process: mpqsim {p['mpqsim_s']:.2f} s, llm-analysis {p['llm_analysis_s']:.2f} s "
          f"(with transformers hidden {p['llm_analysis_no_transformers_s']:.2f} s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rec, indent=2) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
