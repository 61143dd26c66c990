"""Quantize-dequantize throughput (elements/s) on a 4096x4096 fp32 tensor, ours vs torchao's MX.

Run: ``python benchmarks/quant_speed.py`` (prints a table; records
``benchmarks/results/quant_speed.json``). For each format, one thread and all threads, side by side
in the same run: mpqsim on a NumPy array and on a CPU torch tensor (the fused Numba kernel), and
torchao's ``to_mx`` + ``to_dtype`` (quantize + dequantize) where the format is an MXFP one.
Targets (issue 3): at least torchao's speed on MXFP; >= 200 M elements/s per core for mxint4_32.
Timing: best of 5 after a warm-up call.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numba
import numpy as np

from quant import quantize

RESULTS = Path(__file__).parent / "results" / "quant_speed.json"
FORMATS = ("mxint4_32", "mxfp4_e2m1_32", "mxfp8_e4m3_32", "int4_g128")
N = 4096


def best_of(fn, reps=5) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import torch

    x = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    xt = torch.from_numpy(x.copy())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
        import torchao

        tao_version = torchao.__version__
    except ImportError:
        to_mx = None
        tao_version = None
    tao_elem = {"mxfp4_e2m1_32": torch.float4_e2m1fn_x2, "mxfp8_e4m3_32": torch.float8_e4m3fn}
    all_threads = os.cpu_count() or 1
    rows = []
    for threads in sorted({1, all_threads}):
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
        for fmt in FORMATS:
            row = dict(format=fmt, threads=threads)
            row["mpqsim_numpy"] = x.size / best_of(lambda: quantize(x, fmt))
            row["mpqsim_torch_cpu"] = x.size / best_of(lambda: quantize(xt, fmt))
            if to_mx is not None and fmt in tao_elem:
                elem = tao_elem[fmt]

                def tao():
                    s, d = to_mx(xt, elem, 32)
                    return to_dtype(d, s, elem, 32, torch.float32)

                row["torchao"] = x.size / best_of(tao)
            rows.append(row)
    print(f"elements/s on a {N}x{N} fp32 tensor (M = 1e6), quantize + dequantize; torchao {tao_version}")
    print(f"{'format':16s} {'threads':>7s} {'mpqsim numpy':>14s} {'mpqsim torch':>14s} {'torchao':>10s} {'vs torchao':>10s}")
    for r in rows:
        tao = r.get("torchao")
        ours = r["mpqsim_numpy"]
        tao_s = f"{tao / 1e6:8.0f} M" if tao else "-"
        ratio = f"{ours / tao:9.1f}x" if tao else "-"
        print(f"{r['format']:16s} {r['threads']:7d} {ours / 1e6:12.0f} M {r['mpqsim_torch_cpu'] / 1e6:12.0f} M "
              f"{tao_s:>10s} {ratio:>10s}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(dict(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=dict(platform=platform.platform(), cpus=os.cpu_count(), python=platform.python_version(),
                     numba=numba.__version__, torch=torch.__version__, torchao=tao_version),
        shape=[N, N], unit="elements per second", rows=rows,
        targets=dict(mxint4_32_per_core=200e6, mxfp="at least torchao")), indent=1) + "\n")
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
