"""Measure end-to-end Llama-2-7B prefill and decode on a real GPU (random weights, bf16).

Run on a GPU machine (needs torch and transformers):
    python3 benchmarks/gpu/e2e_llama.py --out DIR [--model llama-2-7b] [--batches 1,8,64] [--compile]

``--compile`` runs the model through ``torch.compile`` (Inductor fuses the norms, rotary embedding,
SiLU-and-multiply and residual adds: the measurement mpqsim's ``fused`` engine is held against)
and writes e2e_<model>_compiled.csv; without it the transformers eager engine (e2e_<model>.csv).

The model is built from mpqsim's bundled config with random weights (nothing is downloaded),
attention through PyTorch SDPA. For each batch size it times:
  * prefill of a 1024-token prompt per sequence (logits of the last token only),
  * one decode step at context 1024 (1023 cached tokens + the new one), three ways: with
    transformers' DynamicCache (which copies the whole cache every step), with a StaticCache (eager),
    and the StaticCache step captured in a CUDA graph and replayed (what serving engines do),
each as wall time (CUDA-synchronised, eager PyTorch: includes Python and launch overheads) and
as the sum of GPU kernel times from torch.profiler (no launch gaps). Writes e2e_<model>.csv and
env.json to --out. Timings: median of 5 after 2 warm-ups.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[2]


def kernel_ms(fn) -> tuple[float, int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    evs = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return sum(e.device_time for e in evs) / 1e3, len(evs)


def wall_ms(fn, warmup=2, reps=5) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def static_decode(model, config, b, context, gen) -> list[dict]:
    """Decode at a fixed context with a StaticCache (no cache copies): eager, then CUDA-graph replay."""
    from transformers import StaticCache

    cache = StaticCache(config=config, max_cache_len=context + 64)  # slack: attention reads the whole buffer
    ctx_ids = torch.randint(0, config.vocab_size, (b, context - 1), device="cuda", generator=gen)
    model(input_ids=ctx_ids, past_key_values=cache, use_cache=True, logits_to_keep=1,
          cache_position=torch.arange(context - 1, device="cuda"))
    nxt = torch.randint(0, config.vocab_size, (b, 1), device="cuda", generator=gen)
    pos = torch.tensor([context - 1], device="cuda")

    def step():  # writes position C-1 again each time: the context stays C
        return model(input_ids=nxt, past_key_values=cache, use_cache=True, cache_position=pos)

    rows = []
    w = wall_ms(step)
    k, n = kernel_ms(step)
    rows.append(dict(phase="decode_static_cache", batch=b, q=1, past=context - 1, wall_ms=w, kernel_ms=k, kernels=n))
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        w = wall_ms(graph.replay, warmup=3, reps=20)
        k, n = kernel_ms(graph.replay)
        rows.append(dict(phase="decode_cuda_graph", batch=b, q=1, past=context - 1, wall_ms=w, kernel_ms=k, kernels=n))
    except Exception as e:  # capture can fail if the model syncs with the host
        print(f"CUDA graph capture failed at batch {b}: {type(e).__name__}: {str(e)[:200]}", flush=True)
    del cache
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama-2-7b")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (a fused engine)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "workloads/configs" / f"{args.model}.json").read_text())
    cfg.pop("_mpqsim")
    config = LlamaConfig(**cfg)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)  # bf16 only for the weights (a bf16 default breaks StaticCache)
    model.eval()
    model.config._attn_implementation = "sdpa"
    if args.compile:  # Inductor fuses the element-wise ops; shapes are static per batch size
        model.forward = torch.compile(model.forward, dynamic=False)
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.inference_mode():
        for b in [int(x) for x in args.batches.split(",")]:
            ids = torch.randint(0, config.vocab_size, (b, args.prompt), device="cuda", generator=gen)

            def prefill():
                return model(input_ids=ids, use_cache=True, logits_to_keep=1)

            w = wall_ms(prefill)
            k, n = kernel_ms(prefill)
            rows.append(dict(phase="prefill", batch=b, q=args.prompt, past=0, wall_ms=w, kernel_ms=k, kernels=n))
            # decode at context C: a cache of C-1 tokens, one new token per sequence
            ctx_ids = torch.randint(0, config.vocab_size, (b, args.context - 1), device="cuda", generator=gen)
            cache = DynamicCache()
            model(input_ids=ctx_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = torch.randint(0, config.vocab_size, (b, 1), device="cuda", generator=gen)

            def decode():
                r = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                cache.crop(-1)  # keep the context fixed across repetitions
                return r

            w = wall_ms(decode)
            k, n = kernel_ms(decode)
            rows.append(dict(phase="decode_dynamic_cache", batch=b, q=1, past=args.context - 1, wall_ms=w,
                             kernel_ms=k, kernels=n))
            del cache
            torch.cuda.empty_cache()
            rows += static_decode(model, config, b, args.context, gen)
            for r in rows[-4:]:
                print(r, flush=True)
            torch.cuda.empty_cache()
    import csv

    engine = "compiled" if args.compile else "eager"
    for r in rows:
        r["engine"] = engine
    with open(out / f"e2e_{args.model}{'_compiled' if args.compile else ''}.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    import transformers

    props = torch.cuda.get_device_properties(0)
    (out / "env.json").write_text(json.dumps(dict(
        gpu=props.name, sms=props.multi_processor_count, memory_gib=props.total_memory / 2**30,
        torch=torch.__version__, cuda=torch.version.cuda, transformers=transformers.__version__,
        model=args.model, dtype="bfloat16", attention="sdpa", engine=engine,
        command="python3 benchmarks/gpu/e2e_llama.py "
        f"--out DIR --model {args.model} --batches {args.batches}{' --compile' if args.compile else ''}"), indent=1))


if __name__ == "__main__":
    main()
