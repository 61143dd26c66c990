"""Latency and memory of a model on devices at batch sizes and precisions (``mpqsim latency``).

Phases are configurations of one priced path (see :mod:`workloads.optable`): prefill of a prompt
of S tokens is ``q = S, past = 0`` (or chunks of it), decode at context C is ``q = 1, past = C - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwmodels.spec import DeviceSpec
from mpqsim import InputError
from quant.precision import PrecisionMap
from sim.costmodel import AssignedModel, assign, configs, lower, price
from sim.lowering import check_choices_used
from workloads.optable import KIND_NAMES
from workloads.spec import ModelSpec

GB = 1e9


@dataclass(frozen=True)
class Phase:
    """One forward pass: ``q`` new tokens per sequence after ``past`` cached ones."""

    name: str
    q: int
    past: int


def phases(prompt: int, context: int, chunk: int | None = None) -> list[Phase]:
    """Prefill of ``prompt`` tokens (in chunks if ``chunk``) and one decode step at ``context``."""
    step = chunk or prompt
    pre = [Phase("prefill", min(step, prompt - s), s) for s in range(0, prompt, step)]
    return pre + [Phase("decode", 1, context - 1)]


def validate(spec: ModelSpec, batches, prompt: int, context: int, chunk: int | None = None) -> None:
    """Raise :class:`InputError` for impossible shapes."""
    if not batches:
        raise InputError("no batch size given")
    for b in batches:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b <= 0:
            raise InputError(f"batch size must be a positive integer, got {b!r}")
    for what, v in (("prompt", prompt), ("context", context)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{what} length must be a whole number of tokens, got {v!r}")
        if v <= 0:
            raise InputError(f"{what} length must be > 0, got {v}")
        if v > spec.max_positions:
            raise InputError(f"{what} length {v} exceeds {spec.name}'s maximum context of "
                             f"{spec.max_positions} tokens")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))):
        raise InputError(f"prefill chunk must be a whole number of tokens, got {chunk!r}")
    if chunk is not None and chunk <= 0:
        raise InputError(f"prefill chunk must be > 0, got {chunk}")


def memory(model: AssignedModel, batch, context, act_peak) -> dict:
    """Memory footprint (bytes): weights + KV cache at ``context`` tokens + peak activations."""
    w = model.weight_bytes
    kv = model.kv_bytes(batch, context)
    return dict(weights=w, kv=kv, act=act_peak, total=w + kv + act_peak)


def check_fit(spec: ModelSpec, device: DeviceSpec, pmap: PrecisionMap, need_bytes: float,
              what: str = "") -> None:
    """Raise :class:`InputError` saying by how much a configuration overflows device memory."""
    if need_bytes > device.memory_bytes:
        raise InputError(
            f"{spec.name} at {pmap.name}{' ' + what if what else ''} needs {need_bytes / GB:.1f} GB "
            f"but {device.name} has {device.memory_bytes / GB:.0f} GB (short by "
            f"{(need_bytes - device.memory_bytes) / GB:.1f} GB); try a lighter precision, a smaller "
            "batch or context, or a larger device")


def _bound(t_memory, t_compute) -> np.ndarray:
    """Which roofline side holds most of the time (arrays of seconds -> 'memory'/'compute', flat)."""
    return np.where(t_memory >= t_compute, "memory", "compute").ravel()


def latency_table(spec: ModelSpec, devices: list[DeviceSpec], pmaps: list[PrecisionMap],
                  batches, prompt: int, context: int, chunk: int | None = None,
                  eager: bool = False, fused_attention: bool = True, engine: str = "fused",
                  kernels: dict | None = None, layout=None) -> pd.DataFrame:
    """One row per (device, precision, batch): prefill and decode latency, throughput, memory.

    ``layout`` (:class:`workloads.parallel.Layout`) spreads the model over ``tp x pp`` devices:
    times are one pass of the batch through the whole pipeline (``*_comm_ms``: the part spent in
    collectives and send/recv), memory is per device (the largest pipeline stage's), ``fits``
    per device.

    ``decode_ms`` is one decode step of the whole batch at context ``context``; ``kv_gb`` is the
    cache held at ``max(prompt, context)`` tokens; ``fits`` compares weights + KV + peak
    activations with the device's memory. ``*_bound`` says which roofline side dominates the time.
    Energy (hwmodels/power.py): ``*_j_per_token`` is the phase's energy per token it produces
    (prefill: per prompt token; decode: per sequence's new token), ``*_power_w`` its average board
    power and ``*_clock_mhz`` the time-weighted SM clock the power cap allows (``power_cap_w``).
    ``engine`` (sim/engines.yaml) and ``kernels`` (GEMM class -> kernel, e.g. ``{"w4a16": "tinygemm"}``)
    are what :func:`sim.lowering.lower` takes; the ``engine`` and ``gemm_kernels`` columns say what
    was assumed, ``calibrated`` whether every GEMM kernel's constants were fitted on that device's
    architecture.
    """
    batches = list(batches)
    validate(spec, batches, prompt, context, chunk)
    ph = phases(prompt, context, chunk)  # prefill chunk(s), then the decode step (last)
    shape = (len(devices), len(batches), len(ph))
    n_b, n_ph = len(batches), len(ph)              # configurations: device-major, then batch, then phase
    cfg = configs(device=np.repeat(np.arange(len(devices)), n_b * n_ph),
                  batch=np.tile(np.repeat(np.asarray(batches, dtype=float), n_ph), len(devices)),
                  q=np.tile([float(p.q) for p in ph], len(devices) * n_b),
                  past=np.tile([float(p.past) for p in ph], len(devices) * n_b))
    models = [assign(spec, pmap, layout) for pmap in pmaps]
    check_choices_used(models, kernels)
    lws = [lower(m, devices, eager, fused_attention, kernels=kernels, engine=engine) for m in models]
    from workloads.optable import COMM

    parallel = layout is not None and not layout.trivial  # per-op detail only where there are comm ops to sum
    cts = [price(lw, cfg, detail=parallel) for lw in lws]
    tot = np.stack([ct.totals for ct in cts])
    comm = np.stack([(ct.detail["time"] * (lw.ops["repeat"] * (lw.ops["kind"] == COMM))).sum(-1) if parallel
                     else np.zeros(len(cfg)) for ct, lw in zip(cts, lws)])
    gk, cal = gemm_kernels(lws, devices)
    full = (len(pmaps), *shape)                       # precision x device x batch x phase
    total, t_mem, t_cmp = (tot[f].reshape(full) for f in ("time", "time_memory_bound", "time_compute_bound"))
    energy, clock_t = tot["energy"].reshape(full), tot["clock_time"].reshape(full)
    pre, dec = np.s_[..., :-1], np.s_[..., -1]
    pre_t, dec_t = total[pre].sum(-1), total[dec]     # precision x device x batch
    pre_e, dec_e = energy[pre].sum(-1), energy[dec]
    grid_b = np.broadcast_to(np.asarray(batches)[None, :], shape[:2])
    capacity = np.array([d.memory_bytes for d in devices])[:, None]
    held = max(prompt, context)
    act = tot["act_peak"].reshape(full).max(-1)
    stage_w = [m.stage_weight_bytes() for m in models]            # per pipeline stage
    stage_kv = [m.stage_kv_bytes(grid_b, held) for m in models]   # device x batch x stage
    worst = [np.argmax(w[None, None, :] + kv, axis=-1) for w, kv in zip(stage_w, stage_kv)]
    weights = np.stack([w[i] for w, i in zip(stage_w, worst)])
    kv = np.stack([np.take_along_axis(k, i[..., None], -1)[..., 0] for k, i in zip(stage_kv, worst)])
    need = weights + kv + act
    comm = comm.reshape(full)
    n = pre_t.size
    dev_names = np.repeat(np.array([d.name for d in devices], dtype=object), len(batches))
    return pd.DataFrame(dict(
        model=np.full(n, spec.name, dtype=object), device=np.tile(dev_names, len(pmaps)),
        precision=np.repeat(np.array([p.name for p in pmaps], dtype=object), len(dev_names)),
        batch=np.tile(np.asarray(batches), n // len(batches)),
        prompt=np.full(n, prompt), context=np.full(n, context), prefill_ms=pre_t.ravel() * 1e3,
        prefill_bound=_bound(t_mem[pre].sum(-1), t_cmp[pre].sum(-1)),
        decode_ms=dec_t.ravel() * 1e3, decode_bound=_bound(t_mem[dec], t_cmp[dec]),
        prefill_comm_ms=comm[pre].sum(-1).ravel() * 1e3, decode_comm_ms=comm[dec].ravel() * 1e3,
        decode_tok_s=(grid_b / dec_t).ravel(), prefill_tok_s=(grid_b * prompt / pre_t).ravel(),
        prefill_j_per_token=(pre_e / (grid_b * prompt)).ravel(), decode_j_per_token=(dec_e / grid_b).ravel(),
        prefill_power_w=(pre_e / pre_t).ravel(), decode_power_w=(dec_e / dec_t).ravel(),
        prefill_clock_mhz=(clock_t[pre].sum(-1) / pre_t).ravel() / 1e6, decode_clock_mhz=(clock_t[dec] / dec_t).ravel() / 1e6,
        power_cap_w=np.tile(np.repeat([float(x) for x in lws[0].device["cap_w"]], len(batches)), len(pmaps)),
        layout=np.full(n, str(layout) if layout is not None else "tp1", dtype=object),
        devices=np.full(n, layout.devices if layout is not None else 1),
        weights_gb=np.broadcast_to(weights / GB, pre_t.shape).ravel(), kv_gb=kv.ravel() / GB,
        act_gb=act.ravel() / GB, total_gb=need.ravel() / GB,
        capacity_gb=np.broadcast_to(capacity, pre_t.shape).ravel() / GB, fits=(need <= capacity).ravel(),
        engine=np.full(n, engine, dtype=object), gemm_kernels=np.repeat(gk.ravel(), len(batches)),
        calibrated=np.repeat(cal.ravel(), len(batches))))


def gemm_kernels(lws, devices) -> tuple[np.ndarray, np.ndarray]:
    """Per (precision, device): the GEMM kernels an assigned model's matmuls run ("cublas+marlin"),
    and whether all their constants are fitted on that device's architecture."""
    from hwmodels.kernels import kernel_params
    from workloads.optable import EXPERT, LINEAR

    names = np.empty((len(lws), len(devices)), dtype=object)
    cal = np.zeros((len(lws), len(devices)), dtype=bool)
    for i, lw in enumerate(lws):
        gemm = np.isin(lw.ops["kind"], [LINEAR, EXPERT])
        for d, dev in enumerate(devices):
            ks = sorted({k for k, g in zip(lw.kernels(d), gemm) if g})
            names[i, d] = "+".join(ks)
            cal[i, d] = all(kernel_params(k, dev.architecture).calibrated for k in ks)
    return names, cal


def per_op_table(spec: ModelSpec, device: DeviceSpec, pmap: PrecisionMap, batch: int, prompt: int,
                 context: int, chunk: int | None = None, eager: bool = False,
                 fused_attention: bool = True, engine: str = "fused", kernels: dict | None = None,
                 layout=None) -> pd.DataFrame:
    """Every op of every phase, explained: shape, formats, unit, kernel, FLOPs, bytes, bound, time.

    ``time_us`` is one instance (one layer); ``total_us`` = ``time_us`` x ``repeat``; ``share``
    is the op's fraction of its phase's time. Bytes are in MB (1e6). ``energy_mj`` is one
    instance's energy (compute + DRAM + on-chip + static; ``total_energy_mj`` x ``repeat``; they sum
    to the phase's energy), ``power_w`` its average power and ``clock_mhz`` the clock the power cap
    allows it.
    """
    validate(spec, [batch], prompt, context, chunk)
    model = assign(spec, pmap, layout)
    t = model.table
    check_choices_used([model], kernels)
    lw = lower(model, [device], eager, fused_attention, kernels=kernels, engine=engine)
    ph = phases(prompt, context, chunk)
    det = price(lw, device=0, batch=batch, q=[p.q for p in ph], past=[p.past for p in ph], detail=True).detail
    repeat = t["repeat"].to_numpy()
    frames = []
    for i, p in enumerate(ph):
        d = det[i]
        byts = d["bytes_w"] + d["bytes_act"] + d["bytes_kv"]
        total = d["time"] * repeat
        label = p.name if len(ph) == 2 or p.name == "decode" else f"{p.name}@{p.past}"
        frames.append(pd.DataFrame(dict(
            phase=label, op=t["name"], kind=[KIND_NAMES[k] for k in t["kind"]], repeat=t["repeat"],
            weight_fmt=t["weight_fmt"], act_fmt=t["act_fmt"], kv_fmt=t["kv_fmt"], unit=lw.units(0),
            kernel=lw.kernels(0), launches=lw.per_op["launches"][0], M=d["m"], N=d["n"], K=d["k"], count=d["count"], gflops=d["flops"] / 1e9,
            weight_mb=d["bytes_w"] / 1e6, act_mb=d["bytes_act"] / 1e6, kv_mb=d["bytes_kv"] / 1e6,
            intensity=np.divide(d["flops"], byts, out=np.zeros_like(byts), where=byts > 0),
            bound=_bound(d["t_memory"], d["t_compute"]),
            time_us=d["time"] * 1e6, total_us=total * 1e6,
            share=total / total.sum(), energy_mj=d["energy"] * 1e3, total_energy_mj=d["energy"] * repeat * 1e3,
            power_w=np.divide(d["energy"], d["time"], out=np.zeros_like(byts), where=d["time"] > 0),
            clock_mhz=np.divide(d["clock_time"], d["time"], out=np.zeros_like(byts), where=d["time"] > 0) / 1e6)))
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(model=spec.name, device=device.name, precision=pmap.name, batch=batch, engine=engine)
    return out
