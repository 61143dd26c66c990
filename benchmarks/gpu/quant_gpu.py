"""quantize on a CUDA tensor: bit parity with the NumPy path, and throughput vs torchao on the GPU.

Run on a GPU machine from the repository root:  python3 benchmarks/gpu/quant_gpu.py --out DIR
Writes quant_gpu.json (parity per format and rounding; elements/s per format) to DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from quant import quantize  # noqa: E402

FORMATS = ["mxint8_32", "mxint4_32", "mxint2_32", "mxfp8_e4m3_32", "mxfp8_e5m2_32", "mxfp6_e3m2_32", "mxfp6_e2m3_32",
           "mxfp4_e2m1_32", "fp8_e4m3", "fp4_e2m1_chan_mse", "int8_chan", "int4_g128", "int4_g128_asym",
           "int3_g32_mse", "nf4_64", "dyn8_64", "bf16", "fp16"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 1000)) * np.exp(rng.uniform(-30, 30, (64, 1)))).astype(np.float32)
    x[rng.random(x.shape) < 0.02] = 0
    x[3, 5], x[7, 9], x[9, 1] = np.inf, np.nan, 1e-42
    xc = torch.from_numpy(x).cuda()
    parity, detail = {}, {}
    for f in FORMATS:
        for r in ("even", "nearest", "floor"):
            for axis in (0, -1):
                ref = quantize(x, f, axis=axis, rounding=r)
                got = quantize(xc, f, axis=axis, rounding=r).cpu().numpy()
                same = bool(np.array_equal(ref.view(np.int32), got.view(np.int32)))
                parity[f"{f}/{r}/axis{axis}"] = same
                if not same:
                    d = ref.view(np.int32) != got.view(np.int32)
                    both_nan = np.isnan(ref) & np.isnan(got)
                    fin = d & ~both_nan
                    i = np.argwhere(fin)[:1]
                    detail[f"{f}/{r}/axis{axis}"] = dict(
                        differing=int(d.sum()), nan_payload_only=int((d & both_nan).sum()), value=int(fin.sum()),
                        example=[float(x[tuple(i[0])]), float(ref[tuple(i[0])]), float(got[tuple(i[0])])] if len(i) else None,
                        max_rel=float(np.nanmax(np.abs(ref[fin] - got[fin]) / np.maximum(np.abs(ref[fin]), 1e-30))) if fin.any() else 0.0)
    bad = [k for k, v in parity.items() if not v]
    print(f"GPU vs NumPy bit parity: {len(parity) - len(bad)}/{len(parity)} identical")
    for k, v in detail.items():
        if k.endswith("even/axis-1"):
            print(" ", k, v)
    big = torch.randn(4096, 4096, device="cuda")
    ev = lambda: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))  # noqa: E731

    def rate(fn):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        s, e = ev()
        s.record()
        for _ in range(20):
            fn()
        e.record()
        torch.cuda.synchronize()
        return big.numel() / (s.elapsed_time(e) / 20 / 1e3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
        except ImportError:
            to_mx = None
    speed = {}
    for f in ("mxint4_32", "mxfp4_e2m1_32", "mxfp8_e4m3_32", "int4_g128"):
        speed[f] = {"mpqsim": rate(lambda: quantize(big, f))}
        elem = {"mxfp4_e2m1_32": torch.float4_e2m1fn_x2, "mxfp8_e4m3_32": torch.float8_e4m3fn}.get(f)
        if to_mx is not None and elem is not None:
            speed[f]["torchao"] = rate(lambda: to_dtype(*reversed(to_mx(big, elem, 32)), elem, 32, torch.float32))
        print(f, {k: f"{v / 1e9:.1f} G elem/s" for k, v in speed[f].items()})
    (out / "quant_gpu.json").write_text(json.dumps(dict(
        gpu=torch.cuda.get_device_name(0), torch=torch.__version__, parity=parity, differences=detail,
        elements_per_s=speed,
        command="python3 benchmarks/gpu/quant_gpu.py --out DIR"), indent=1))


if __name__ == "__main__":
    main()
