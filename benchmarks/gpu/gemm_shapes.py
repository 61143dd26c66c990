"""Measure one dense GEMM ``y[m x n] = x[m x k] . W[n x k]^T`` in six precisions on a real GPU, the
way the shared H100 data was measured, so that any GPU lent to the project yields comparable data.

Run on a GPU machine (needs only torch), from the repository root:
    python3 benchmarks/gpu/gemm_shapes.py --out DIR [--kinds bf16,fp8,...] [--m 1,2,...] [--device-id h200]

Kinds (as PyTorch dispatches them; the ``kind`` column of ``h100_gemm_llama2_7b_shapes.csv``):
``bf16`` / ``fp16`` ``torch.mm`` (cuBLAS); ``fp8`` ``torch._scaled_mm`` e4m3 x e4m3, one scale per
tensor, bf16 out (cuBLASLt); ``fp8_rowwise`` the same with a scale per activation row and per weight
column; ``int8`` ``torch._int_mm`` int8 x int8 -> int32 (refuses m <= 16: those rows are skipped);
``w4a16`` ``torch._weight_int4pack_mm`` ("tinygemm", int4 weights in groups of 128, bf16 activations).
Shapes: the five projection GEMMs of Llama-2-7B; m = 1 ... 16384.

Timing (CUDA): each configuration's calls are captured in a CUDA graph and replayed; the time per
GEMM is the median of five chunks of replays after a warm-up, by device events. Weights rotate among
``copies`` identical-shape copies so that the working set is at least 4x the L2 cache: a decode GEMV
never finds its weights in L2, as in a real model. ``--device cpu`` runs the same code paths on the
CPU with wall-clock timing and small shapes (``--smoke``): a check of the script, not a measurement.

Writes to --out: ``gemm_shapes.csv`` (gpu, device, kind, op, m, n, k, time_ms, tflops, weight_gbps,
copies; one row appended as each configuration finishes, so an interrupted run resumes where it
stopped and never repeats a row), ``ceilings.csv`` (what, size, ms, rate, unit: a 1 GiB
device-to-device copy, a read-only reduction and 8192^3 GEMMs per kind: the achieved bandwidth and
the burst peaks) and ``env.json`` (versions, device name, SMs, L2, memory). A GPU other than the H100
is a held-out device: copy its files to ``benchmarks/results/measured/held_out/<device>/``, which
``benchmarks/fidelity.py`` reads for the transfer error and no fit ever reads.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

H, INTER = 4096, 11008
SHAPES = {"qkv_proj": (3 * H, H), "o_proj": (H, H), "gate_up_proj": (2 * INTER, H), "down_proj": (H, INTER),
          "lm_head": (32000, H)}
SMOKE_SHAPES = {"o_proj": (256, 256), "down_proj": (256, 512)}  # --smoke: k a multiple of the int4 group
KINDS = ("bf16", "fp16", "fp8", "fp8_rowwise", "int8", "w4a16")
M_ALL = tuple(2 ** i for i in range(15))  # 1 ... 16384
#: torch.cuda.get_device_name substrings -> mpqsim device ids (hwmodels/devices/); --device-id overrides
DEVICE_IDS = (("H200", "h200"), ("H100 PCIe", "h100-pcie"), ("H100", "h100-sxm"), ("B200", "b200"),
              ("A100-SXM4-40GB", "a100-40gb"), ("A100", "a100-80gb"), ("A40", "a40"), ("RTX A6000", "rtx-a6000"),
              ("L40S", "l40s"), ("MI300X", "mi300x"))
COLUMNS = ("gpu", "device", "kind", "op", "m", "n", "k", "time_ms", "tflops", "weight_gbps", "copies")
GROUP = 128  # tinygemm's int4 group size


def fail(msg: str):
    """Bad input: one line, exit code 2."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def device_id(name: str) -> str:
    for key, dev in DEVICE_IDS:
        if key in name:
            return dev
    fail(f"no mpqsim device id known for GPU {name!r}; pass --device-id (see hwmodels/devices/)")


def weight_bytes(kind: str, n: int, k: int) -> float:
    """Bytes of the stored weight: 2 per element (bf16/fp16), 1 (fp8/int8), 0.5 + group scales (int4)."""
    per = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "fp8_rowwise": 1.0, "int8": 1.0, "w4a16": 0.5}[kind]
    return n * k * per + (n * (k // GROUP) * 2 * 2 if kind == "w4a16" else 0.0)


def copies_for(kind: str, n: int, k: int, l2_bytes: float) -> int:
    """Identical-shape weight copies so that the rotated working set is at least 4x the L2."""
    return max(2, math.ceil(4 * l2_bytes / weight_bytes(kind, n, k))) if l2_bytes > 0 else 1


def make_weights(kind: str, n: int, k: int, copies: int, dev: str) -> list:
    """``copies`` operands of ``kind`` for an (n, k) weight, prepared as each kernel wants them."""
    out = []
    for _ in range(copies):
        w = torch.randn(n, k, device=dev)
        if kind in ("bf16", "fp16"):
            out.append(w.to(torch.bfloat16 if kind == "bf16" else torch.float16).t())  # x @ W^T
        elif kind in ("fp8", "fp8_rowwise"):
            scale = torch.ones(1, n, device=dev) if kind == "fp8_rowwise" else torch.tensor(1.0, device=dev)
            out.append((w.clamp(-448, 448).to(torch.float8_e4m3fn).t(), scale))  # column-major, as cuBLASLt wants
        elif kind == "int8":
            out.append(torch.randint(-127, 128, (n, k), dtype=torch.int8, device=dev).t())
        elif kind == "w4a16":
            q = torch.randint(0, 16, (n, k), dtype=torch.int32, device=dev)
            if dev == "cpu":
                packed = torch._convert_weight_to_int4pack_for_cpu(q, 8)
            else:
                packed = torch._convert_weight_to_int4pack((q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8), 8)
            sz = torch.stack([torch.rand(k // GROUP, n, device=dev) * 0.01 + 0.001,
                              torch.zeros(k // GROUP, n, device=dev)], dim=-1).to(torch.bfloat16)
            out.append((packed, sz))
        del w
    return out


def make_input(kind: str, m: int, k: int, dev: str):
    x = torch.randn(m, k, device=dev)
    if kind in ("bf16", "w4a16"):
        return x.to(torch.bfloat16)
    if kind == "fp16":
        return x.to(torch.float16)
    if kind in ("fp8", "fp8_rowwise"):
        scale = torch.ones(m, 1, device=dev) if kind == "fp8_rowwise" else torch.tensor(1.0, device=dev)
        return x.clamp(-448, 448).to(torch.float8_e4m3fn), scale
    return torch.randint(-127, 128, (m, k), dtype=torch.int8, device=dev)


def gemm_fn(kind: str, x, w, dev: str):
    """A zero-argument callable computing one GEMM of ``kind``."""
    if kind in ("bf16", "fp16"):
        return lambda: torch.mm(x, w)
    if kind in ("fp8", "fp8_rowwise"):
        (xa, sa), (wb, sb) = x, w
        return lambda: torch._scaled_mm(xa, wb, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    if kind == "int8":
        return lambda: torch._int_mm(x, w)
    packed, sz = w
    mm = torch._weight_int4pack_mm_for_cpu if dev == "cpu" else torch._weight_int4pack_mm
    return lambda: mm(x, packed, GROUP, sz)


def time_calls(fns: list, dev: str, target_s: float = 0.02, chunks: int = 5) -> float:
    """Seconds per call of the rotating ``fns``: CUDA-graph replays timed by events (median of
    ``chunks``), or wall-clock loops on the CPU."""
    for f in fns:  # warm-up (and cuBLASLt heuristics) outside the graph
        f()
    if dev == "cpu":
        ts = []
        for _ in range(chunks):
            t0 = time.perf_counter()
            for f in fns:
                f()
            ts.append((time.perf_counter() - t0) / len(fns))
        return statistics.median(ts)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for f in fns:
        f()
    torch.cuda.synchronize()
    per = max((time.perf_counter() - t0) / len(fns), 1e-6)
    rounds = max(1, min(200, int(target_s / (per * len(fns)))))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):  # captures on its own side stream
        for _ in range(rounds):
            for f in fns:
                f()
    g.replay()  # warm replay
    torch.cuda.synchronize()
    ts = []
    for _ in range(chunks):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) * 1e-3 / (rounds * len(fns)))
    del g
    return statistics.median(ts)


def done_keys(path: Path) -> set:
    if not path.exists():
        return set()
    with path.open() as f:
        return {(r["kind"], r["op"], int(r["m"])) for r in csv.DictReader(f)}


def measure_shapes(out: Path, gpu: str, dev_id: str, kinds, ms, shapes, dev: str, l2: float, log=print) -> int:
    """Append one row per (kind, op, m) not yet in ``out``; returns the rows written now."""
    seen, wrote = done_keys(out), 0
    new = not out.exists()
    with out.open("a", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            wr.writeheader()
        todo = [(kind, op) for kind in kinds for op in shapes]
        for i, (kind, op) in enumerate(todo, 1):
            n, k = shapes[op]
            rows = [m for m in ms if (kind, op, m) not in seen and not (kind == "int8" and m <= 16)]
            if not rows:
                continue
            copies = copies_for(kind, n, k, l2)
            ws = make_weights(kind, n, k, copies, dev)
            for m in rows:
                x = make_input(kind, m, k, dev)
                t = time_calls([gemm_fn(kind, x, w, dev) for w in ws], dev)
                wr.writerow(dict(gpu=gpu, device=dev_id, kind=kind, op=op, m=m, n=n, k=k, time_ms=t * 1e3,
                                 tflops=2 * m * n * k / t / 1e12, weight_gbps=weight_bytes(kind, n, k) / t / 1e9,
                                 copies=copies))
                f.flush()
                wrote += 1
            del ws
            if dev != "cpu":
                torch.cuda.empty_cache()
            log(f"[{i}/{len(todo)}] {kind} {op}: {len(rows)} sizes")
    return wrote


def measure_ceilings(out: Path, kinds, dev: str, size: int, copy_bytes: int) -> None:
    """The achieved-bandwidth and burst-peak ceilings (the columns of h100_ceilings.csv)."""
    rows = []
    a = torch.empty(copy_bytes // 4, device=dev)
    b = torch.empty_like(a)
    t = time_calls([lambda: b.copy_(a)], dev)
    rows.append(("d2d_copy_rw", copy_bytes, t * 1e3, 2 * copy_bytes / t / 1e12, "TB/s(read+write)"))
    t = time_calls([lambda: a.sum()], dev)
    rows.append(("read_reduce", copy_bytes, t * 1e3, copy_bytes / t / 1e12, "TB/s(read)"))
    del a, b
    for kind in kinds:
        w = make_weights(kind, size, size, 1, dev)[0]
        t = time_calls([gemm_fn(kind, make_input(kind, size, size, dev), w, dev)], dev)
        rows.append((f"gemm_{kind}", size, t * 1e3, 2 * size ** 3 / t / 1e12, "TFLOP/s"))
    with out.open("w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(("what", "size", "ms", "rate", "unit"))
        wr.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gemm_shapes.csv, ceilings.csv, env.json")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma list of {', '.join(KINDS)}")
    ap.add_argument("--m", default=",".join(map(str, M_ALL)), help="comma list of row counts")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--device-id", help="mpqsim device id of this GPU (default: from its name)")
    ap.add_argument("--smoke", action="store_true", help="small shapes and ceilings (a check of the script)")
    ap.add_argument("--no-ceilings", action="store_true")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    bad = sorted(set(kinds) - set(KINDS))
    if bad:
        fail(f"unknown kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    try:
        ms = [int(v) for v in args.m.split(",") if v]
    except ValueError:
        fail(f"--m must be a comma list of positive integers, got {args.m!r}")
    if not ms or min(ms) < 1:
        fail(f"--m must be a comma list of positive integers, got {args.m!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device; --device cpu runs the script's check on the CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = args.device
    if dev == "cuda":
        prop = torch.cuda.get_device_properties(0)
        gpu, l2 = prop.name, float(getattr(prop, "L2_cache_size", 50 * 2 ** 20))
        env = dict(gpu=gpu, sms=prop.multi_processor_count, l2_bytes=l2, memory_bytes=prop.total_memory,
                   capability=f"{prop.major}.{prop.minor}", torch=torch.__version__, cuda=torch.version.cuda)
    else:
        gpu, l2 = "cpu", 0.0
        env = dict(gpu=gpu, torch=torch.__version__)
    dev_id = args.device_id or (device_id(gpu) if dev == "cuda" else "cpu")
    shapes = SMOKE_SHAPES if args.smoke else SHAPES
    env.update(device=dev_id, command=f"python3 benchmarks/gpu/gemm_shapes.py --out {args.out} --kinds {args.kinds} "
                                      f"--m {args.m}" + (" --smoke" if args.smoke else ""),
               date=time.strftime("%Y-%m-%d"))
    (out / "env.json").write_text(json.dumps(env, indent=1) + "\n")
    n = measure_shapes(out / "gemm_shapes.csv", gpu, dev_id, kinds, ms, shapes, dev, l2)
    if not args.no_ceilings:
        measure_ceilings(out / "ceilings.csv", kinds, dev, 512 if args.smoke else 8192,
                         2 ** 22 if args.smoke else 2 ** 30)
    print(f"wrote {n} rows to {out / 'gemm_shapes.csv'} (ceilings.csv, env.json beside it)")


if __name__ == "__main__":
    main()
