"""A SimPy discrete-event simulator of mixed-precision LLM serving.

Processes: a request source (the arrivals of a stream from :mod:`sim.workload_gen`), a router
(``round_robin`` or ``least_outstanding``) and replicas. Each replica loops: its scheduler
(:mod:`sim.schedulers`) forms a batch, the cost model prices exactly that batch
(:func:`sim.costmodel.iteration_kernel`: prefill chunks and decode contexts as formed) plus an
optional CPU overhead per iteration, the replica waits that long, then every request in the batch
advances: a finished prefill emits a token (the first one: TTFT), each decode step one more.

KV capacity per replica = memory x (1 - margin) - weights (the map's formats) - an activation
reserve (the cost model's peak activations for a prefill of ``max_tokens``), in 16-token blocks
of the map's KV format: lighter weights or KV formats hold more sequences.

``simulate`` returns per-request results and a summary; everything is seeded and deterministic.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from hwmodels.spec import DeviceSpec
from mpqsim import InputError, checks
from quant.precision import PrecisionMap
from sim.costmodel import assign, iteration_kernel, lower, price
from sim.lowering import check_choices_used
from sim.fields import ITERATION_DTYPE, ITERATION_RESULT_DTYPE, Iteration, IterationBatch
from sim.schedulers import BLOCK_TOKENS, SCHEDULERS, KVCache, Request
from workloads.parallel import Layout
from workloads.spec import ModelSpec

ROUTERS = ("round_robin", "least_outstanding")
GB = 1e9


@dataclass(frozen=True)
class ServingConfig:
    """What one simulation runs.

    Attributes:
        scheduler: ``vllm``, ``sarathi`` or ``static``.
        max_batch: cap on running sequences per replica (vLLM max_num_seqs).
        max_tokens: cap on tokens per iteration (vLLM max_num_batched_tokens; Sarathi's budget).
        replicas: identical replicas behind the router.
        router: ``round_robin`` or ``least_outstanding``.
        memory_margin: fraction of device memory not used (vLLM's 1 - gpu_memory_utilization).
        watermark: fraction of KV blocks kept free when admitting new sequences.
        cpu_overhead_s: fixed scheduling/launch overhead added to every iteration.
        eager: eager kernel launches (CUDA graphs otherwise).
        engine: how element-wise ops run (sim/engines.yaml: ``fused`` or ``eager``).
        kernels: GEMM class -> kernel chosen (e.g. ``(("w4a16", "tinygemm"),)``), else each device's default.
        layout: how one replica spreads over devices (:class:`workloads.parallel.Layout`: ``tp`` x ``pp``).
            Tensor parallelism shards every op (collectives priced on the links); with ``pp`` stages a
            replica runs ``pp`` micro-batches in flight (vLLM's virtual engines, each with its own
            scheduler and a ``1 / pp`` share of the KV cache): a new iteration enters the pipeline
            every stage time (its time / ``pp``), and its tokens leave after the whole pipeline.
    """

    scheduler: str = "vllm"
    max_batch: int = 128
    max_tokens: int = 4096
    replicas: int = 1
    router: str = "round_robin"
    memory_margin: float = 0.10
    watermark: float = 0.01
    cpu_overhead_s: float = 0.0
    eager: bool = False
    engine: str = "fused"
    kernels: tuple = ()
    layout: Layout = Layout()


@dataclass(frozen=True)
class SLO:
    ttft_s: float = 2.0
    tpot_s: float = 0.1


@dataclass
class ReplicaModel:
    """One (model, precision, device) lowered for the cost model, and the KV capacity it leaves."""

    spec: ModelSpec
    pmap: PrecisionMap
    device: DeviceSpec
    cfg: ServingConfig
    lowered: object = field(init=False, repr=False)   # sim.lowering.Lowered on [device]
    kv_blocks: int = field(init=False)
    kv_bytes_per_token: float = field(init=False)
    weights_bytes: float = field(init=False)
    reserve_bytes: float = field(init=False)

    def __post_init__(self):
        model = assign(self.spec, self.pmap, self.cfg.layout)
        check_choices_used([model], dict(self.cfg.kernels))
        self.lowered = lower(model, [self.device], self.cfg.eager, kernels=dict(self.cfg.kernels),
                             engine=self.cfg.engine)
        act = price(self.lowered, device=0, batch=1, q=self.cfg.max_tokens, past=0)["act_peak"]
        # per device: the largest pipeline stage's weights and KV per token (one device without pipelining)
        self.weights_bytes = float(model.stage_weight_bytes().max())
        self.reserve_bytes = float(act[0])
        self.kv_bytes_per_token = float(model.stage_kv_bytes(1, 1).max())
        usable = self.device.memory_bytes * (1 - self.cfg.memory_margin)
        free = usable - self.weights_bytes - self.reserve_bytes
        if free < BLOCK_TOKENS * self.kv_bytes_per_token:
            raise InputError(
                f"{self.spec.name} at {self.pmap.name} does not fit {self.device.name}: weights "
                f"{self.weights_bytes / GB:.1f} GB + activation reserve {self.reserve_bytes / GB:.1f} GB exceed the "
                f"{usable / GB:.1f} GB usable (short by {(-free + BLOCK_TOKENS * self.kv_bytes_per_token) / GB:.1f} GB)")
        self.kv_blocks = int(free // (BLOCK_TOKENS * self.kv_bytes_per_token))
        self._kernel_args = (self.lowered.ops, self.lowered.per_op[0], self.lowered.device)
        self.static_w = float(self.lowered.device["static_w"][0])  # between iterations, clocks up
        self.devices = self.cfg.layout.devices  # devices per replica (energy: every one of them)
        self._it = np.zeros(1, dtype=ITERATION_DTYPE)  # the iteration's batch, refilled each call
        self._res = np.zeros(1, dtype=ITERATION_RESULT_DTYPE)  # and what it costs
        self._none = np.zeros(0)

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_blocks * BLOCK_TOKENS

    def iteration(self, batch: list):
        """(seconds, FLOPs, seconds at peak, joules, clock Hz) of one iteration over ``batch`` =
        [(request, new tokens, cached tokens)]; the CPU overhead is idle device time at static power."""
        n_dec, ctx_sum, tokens, pre_q, pre_past = 0, 0.0, 0.0, [], []
        for r, q, past in batch:
            tokens += q
            if q == 1 and r.computed == r.target:  # a decode step
                n_dec += 1
                ctx_sum += past + 1
            else:
                pre_q.append(q)
                pre_past.append(past)
        if pre_q:
            pq, pp = np.array(pre_q, dtype=np.float64), np.array(pre_past, dtype=np.float64)
        else:
            pq = pp = self._none
        self._it[0] = IterationBatch(seqs=len(batch), tokens=tokens, n_decode=n_dec, decode_ctx_sum=ctx_sum)
        ops, low, dev = self._kernel_args
        iteration_kernel(ops, low, dev, self._it, pq, pp, self._res)
        cost = Iteration._make(self._res[0].tolist())  # the record's fields, by the registry's names
        # the priced ops are one device's share of every stage: x tp devices per stage
        return (cost.time + self.cfg.cpu_overhead_s, cost.flops, cost.busy_at_peak,
                (cost.energy + self.cfg.cpu_overhead_s * self.static_w) * self.cfg.layout.tp, cost.clock_hz)


class Replica:
    """One scheduler and its share of a replica's KV cache; with pipeline stages, one of the ``pp``
    virtual engines that share the replica's pipeline (``pipe``: its entry, one iteration at a time)."""

    def __init__(self, env: simpy.Environment, idx: int, model: ReplicaModel, stats: "Stats", pipe=None):
        cfg = model.cfg
        self.env, self.idx, self.model, self.stats, self.pipe = env, idx, model, stats, pipe
        pp = cfg.layout.pp
        self.sched = SCHEDULERS[cfg.scheduler](KVCache(model.kv_blocks // pp, cfg.watermark),
                                               max(1, cfg.max_batch // pp), cfg.max_tokens)
        self.outstanding = 0
        self.wake = env.event()
        self.proc = env.process(self.run())

    def submit(self, r: Request) -> None:
        self.sched.waiting.append(r)
        self.outstanding += 1
        if not self.wake.triggered:
            self.wake.succeed()

    def run(self):
        env, sched, stats = self.env, self.sched, self.stats
        while True:
            batch = sched.schedule(env.now)
            if not batch:
                if sched.waiting and not sched.running:
                    r = sched.waiting[0]
                    raise InputError(f"request {r.rid} ({r.prompt} prompt tokens) can never be scheduled: it needs "
                                     f"more than the {sched.max_tokens}-token batch or the "
                                     f"{sched.kv.total * BLOCK_TOKENS}-token KV cache of one replica")
                self.wake = env.event()
                yield self.wake
                continue
            dt, flops, busy, energy, clock = self.model.iteration(batch)
            stats.iteration(len(batch), sched.kv.used_fraction, dt, flops, busy, energy, clock)
            if self.pipe is None:
                yield env.timeout(dt)
            else:  # enter the pipeline when its first stage is free; leave after every stage
                stage = dt / self.model.cfg.layout.pp
                with self.pipe.request() as turn:
                    yield turn
                    yield env.timeout(stage)
                yield env.timeout(dt - stage)
            now = env.now
            for r, q, _ in batch:
                if r not in sched.running:  # preempted in this very scheduling round
                    continue
                r.computed += q
                if r.computed < r.target:
                    continue  # a chunk of a longer prefill
                r.generated += 1
                r.target = r.computed
                if r.generated == 1:
                    r.first_token = now
                else:
                    r.tbt.append(now - r.last_token)
                r.last_token = now
                if r.generated >= r.output:
                    r.completion = now
                    sched.running.remove(r)
                    sched.kv.release(r)
                    self.outstanding -= 1
                    stats.complete(now)


class Stats:
    """Counters sampled by the replicas: iterations, batch sizes, KV use, in-system area."""

    def __init__(self, n_requests: int, progress=None):
        self.batch_sizes = array("l")   # compact per-iteration samples (8 bytes each, not 32)
        self.kv_used = array("d")
        self.durations = array("d")
        self.flops = 0.0
        self.busy_at_peak = 0.0
        self.energy = 0.0       # J of the iterations (idle gaps are added at the end)
        self.clock_time = 0.0   # Hz x s
        self.in_system = 0
        self.area = 0.0
        self.last = 0.0
        self.left = n_requests
        self.done = None
        self.progress = progress

    def _tick(self, now: float) -> None:
        self.area += self.in_system * (now - self.last)
        self.last = now

    def arrive(self, now: float) -> None:
        self._tick(now)
        self.in_system += 1

    def complete(self, now: float) -> None:
        self._tick(now)
        self.in_system -= 1
        self.left -= 1
        if self.progress:
            self.progress(1)
        if self.left == 0:
            self.done.succeed()

    def iteration(self, size: int, kv: float, dt: float, flops: float, busy: float, energy: float = 0.0,
                  clock_hz: float = 0.0) -> None:
        self.batch_sizes.append(size)
        self.kv_used.append(kv)
        self.durations.append(dt)
        self.flops += flops
        self.busy_at_peak += busy
        self.energy += energy
        self.clock_time += clock_hz * dt


def simulate(spec: ModelSpec, device: DeviceSpec, pmap: PrecisionMap, requests: pd.DataFrame,
             cfg: ServingConfig = ServingConfig(), slo: SLO = SLO(), progress=None) -> tuple[pd.DataFrame, dict]:
    """Run ``requests`` (arrival, prompt, output) through ``cfg.replicas`` replicas of ``spec`` on
    ``device`` at ``pmap``. Returns (per-request DataFrame, summary dict)."""
    _check(spec, requests, cfg, slo)
    model = ReplicaModel(spec, pmap, device, cfg)
    env = simpy.Environment()
    stats = Stats(len(requests), progress)
    stats.done = env.event()
    pp = cfg.layout.pp
    pipes = [simpy.Resource(env, capacity=1) if pp > 1 else None for _ in range(cfg.replicas)]
    replicas = [Replica(env, i, model, stats, pipes[i // pp]) for i in range(cfg.replicas * pp)]
    reqs = [Request(i, float(a), int(p), int(o)) for i, (a, p, o) in
            enumerate(zip(requests.arrival, requests.prompt, requests.output))]

    def source():
        rr = 0
        for r in reqs:
            if r.arrival > env.now:
                yield env.timeout(r.arrival - env.now)
            stats.arrive(env.now)
            if cfg.router == "least_outstanding":
                target = min(replicas, key=lambda x: (x.outstanding, x.idx))
            else:
                target, rr = replicas[rr % len(replicas)], rr + 1
            target.submit(r)

    env.process(source())
    env.run(until=stats.done)
    per_req = pd.DataFrame(dict(
        rid=[r.rid for r in reqs], arrival=[r.arrival for r in reqs], scheduled=[r.scheduled for r in reqs],
        first_token=[r.first_token for r in reqs], completion=[r.completion for r in reqs],
        prompt=[r.prompt for r in reqs], output=[r.output for r in reqs],
        preemptions=[r.preemptions for r in reqs]))
    per_req["ttft"] = per_req.first_token - per_req.arrival
    per_req["e2e"] = per_req.completion - per_req.arrival
    per_req["tpot"] = np.where(per_req.output > 1, (per_req.completion - per_req.first_token)
                               / np.maximum(per_req.output - 1, 1), 0.0)
    tbt = np.concatenate([np.frombuffer(r.tbt, dtype=np.float64) for r in reqs]) if reqs else np.zeros(0)
    return per_req, summarize(per_req, tbt, stats, model, cfg, slo)


def check_config(cfg: ServingConfig, slo: SLO | None = None) -> None:
    """Raise :class:`InputError` for serving settings no simulation can run with."""
    checks.choice(cfg.scheduler, "scheduler", tuple(SCHEDULERS))
    checks.choice(cfg.router, "router", ROUTERS)
    checks.integer(cfg.replicas, "replicas", lo=1, hi=10_000)
    checks.integer(cfg.max_batch, "max batch", lo=1)
    checks.integer(cfg.max_tokens, "max tokens per iteration", lo=1)
    checks.number(cfg.memory_margin, "memory margin (fraction of device memory left unused)", lo=0, hi=1,
                  hi_open=True)
    checks.number(cfg.watermark, "KV watermark (fraction of blocks kept free)", lo=0, hi=1, hi_open=True)
    checks.number(cfg.cpu_overhead_s, "CPU overhead per iteration", lo=0)
    if slo is not None:
        checks.number(slo.ttft_s, "TTFT SLO (s)", lo=0, lo_open=True)
        checks.number(slo.tpot_s, "TPOT SLO (s)", lo=0, lo_open=True)


def _check(spec: ModelSpec, requests: pd.DataFrame, cfg: ServingConfig, slo: SLO | None = None) -> None:
    check_config(cfg, slo)
    if not isinstance(requests, pd.DataFrame) or requests.empty:
        raise InputError("no requests to simulate")
    longest = int((requests.prompt + requests.output).max())
    if longest > spec.max_positions:
        raise InputError(f"a request needs {longest} tokens (prompt + output), beyond {spec.name}'s context "
                         f"window of {spec.max_positions}")
    if cfg.scheduler == "vllm" and int(requests.prompt.max()) > cfg.max_tokens:
        raise InputError(f"a prompt of {int(requests.prompt.max())} tokens exceeds --max-tokens {cfg.max_tokens}, "
                         "which the vllm scheduler cannot prefill; raise it or use --scheduler sarathi")


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def summarize(per_req: pd.DataFrame, tbt: np.ndarray, stats: Stats, model: ReplicaModel, cfg: ServingConfig,
              slo: SLO) -> dict:
    start, end = float(per_req.arrival.min()), float(per_req.completion.max())
    span = end - start
    ok = (per_req.ttft <= slo.ttft_s) & (per_req.tpot <= slo.tpot_s)
    out = dict(requests=len(per_req), duration_s=span, requests_per_s=len(per_req) / span,
               output_tokens_per_s=float(per_req.output.sum()) / span,
               total_tokens_per_s=float((per_req.prompt + per_req.output).sum()) / span,
               goodput_requests_per_s=float(ok.sum()) / span, slo_attainment=float(ok.mean()),
               mean_in_system=stats.area / (stats.last - start) if stats.last > start else 0.0,
               mean_latency_s=float(per_req.e2e.mean()), preemptions=int(per_req.preemptions.sum()))
    for name, col in (("ttft", per_req.ttft.to_numpy()), ("tpot", per_req.tpot.to_numpy()),
                      ("tbt", tbt), ("e2e", per_req.e2e.to_numpy())):
        for q in (50, 90, 99):
            out[f"{name}_p{q}_s"] = _pct(col, q)
    sizes = np.asarray(stats.batch_sizes)
    kv = np.asarray(stats.kv_used)
    dur = np.asarray(stats.durations)
    out.update(iterations=len(sizes), batch_mean=float(sizes.mean()), batch_p50=_pct(sizes, 50),
               batch_p99=_pct(sizes, 99), batch_max=int(sizes.max()),
               kv_util_mean=float((kv * dur).sum() / dur.sum()), kv_util_max=float(kv.max()),
               kv_capacity_tokens=model.kv_capacity_tokens, kv_blocks=model.kv_blocks,
               mfu=stats.busy_at_peak / (span * cfg.replicas * cfg.layout.pp), tflops_per_s=stats.flops * cfg.layout.tp / span / 1e12)
    # energy: the iterations, plus every replica's idle time (no work) at its static power
    # energy: the iterations (every device of a replica), plus idle device time at static power
    busy = float(dur.sum())
    lay = cfg.layout
    device_busy = busy * lay.tp  # device-seconds busy: each iteration occupies every stage's tp devices for a stage time
    energy = stats.energy + max(span * cfg.replicas * lay.devices - device_busy, 0.0) * model.static_w
    out.update(energy_j=energy, energy_per_request_j=energy / len(per_req),
               energy_per_output_token_j=energy / float(per_req.output.sum()),
               power_w=energy / (span * cfg.replicas * lay.devices),
               busy_power_w=stats.energy / device_busy if busy else 0.0,
               clock_mhz=stats.clock_time / busy / 1e6 if busy else 0.0, layout=str(lay), devices_per_replica=lay.devices)
    return out


@dataclass(frozen=True)
class MaxQPS:
    """The answer of :func:`max_qps`.

    ``qps``: the highest probed rate that the system *sustains* (served rate within ``sustain`` of
    the offered rate, and no backlog growing over the second half of the arrivals) while at least
    ``attainment`` of requests meet the SLO; 0 if even the lowest probe fails. ``capped``: the
    search reached its upper bound still passing, so the true maximum is at least ``qps``.
    ``probes``: one row per simulation (the summary, plus offered/served rates and the verdicts).
    """

    qps: float
    capped: bool
    probes: pd.DataFrame


def sustains(per_req: pd.DataFrame, summary: dict, tol: float = 0.02) -> dict:
    """Whether a run kept up with its arrivals: ``offered_rate`` (requests / arrival span),
    ``served_rate`` within ``tol`` of it, and a stable queue (completions, one median latency
    later, keep up with arrivals, within ``tol``, over the second half of the arrivals).

    ``served_rate`` counts the completions inside the arrival window shifted by the median
    end-to-end latency, over the window's length: a system that keeps up completes its requests one
    typical latency after they arrive, so the count matches the arrivals whatever the run's length,
    and a growing backlog pushes completions out of the window. (Requests / span to the last
    completion, the summary's ``requests_per_s``, charges one whole end-to-end latency to the run:
    a short run at a rate the system easily holds would fail by that tail alone.)"""
    arr = np.sort(per_req.arrival.to_numpy())
    n = len(arr)
    span_arr = arr[-1] - arr[0]
    offered = n / span_arr if span_arr > 0 else float("inf")
    lat = (per_req.completion - per_req.arrival).to_numpy()
    shift = float(np.median(lat))
    done_all = per_req.completion.to_numpy()
    in_window = int(((done_all >= arr[0] + shift) & (done_all <= arr[-1] + shift)).sum())
    served = in_window / span_arr if span_arr > 0 else summary["requests_per_s"]
    t_mid, t_end = arr[n // 2], arr[-1]
    done = per_req.completion.to_numpy()
    arrived_w = int(((arr > t_mid) & (arr <= t_end)).sum())
    # completions one typical latency later: a system that keeps up has as many (no tail charged)
    completed_w = int(((done > t_mid + shift) & (done <= t_end + shift)).sum())
    stable = completed_w >= (1 - tol) * arrived_w
    return dict(offered_rate=offered, served_rate=served, queue_stable=bool(stable),
                sustained=bool(stable and served >= (1 - tol) * offered))


def max_qps(spec, device, pmap, make_requests, cfg: ServingConfig = ServingConfig(), slo: SLO = SLO(),
            attainment: float = 0.9, lo: float = 0.1, hi: float = 64.0, tol: float = 0.05,
            cap: float = 1e4, sustain: float = 0.02, progress=None, probe=None) -> MaxQPS:
    """The highest request rate that is sustained (see :func:`sustains`) with at least ``attainment``
    of requests meeting ``slo``: bisection on qps to relative precision ``tol``, the bracket grown
    by doubling up to ``cap``. ``make_requests(qps)`` builds the stream; ``progress(row)`` is called
    after each probe; ``probe(qps) -> row`` (summary + :func:`sustains` verdict) replaces the plain
    simulation, e.g. to journal probes."""
    checks.number(attainment, "attainment (fraction of requests meeting the SLO)", lo=0, hi=1, lo_open=True)
    checks.number(lo, "lowest rate", lo=0, lo_open=True)
    checks.number(hi, "first upper rate", lo=lo, lo_open=True)
    checks.number(cap, "rate cap", lo=hi)
    checks.number(tol, "rate tolerance", lo=0, hi=1, lo_open=True, hi_open=True)
    rows = []

    def run(q):
        per, s = simulate(spec, device, pmap, make_requests(q), cfg, slo)
        return dict(qps=q, **s, **sustains(per, s, sustain))

    def meets(q):
        row = dict((probe or run)(q))
        ok = row["slo_attainment"] >= attainment and row["sustained"]
        rows.append(dict(row, passes=ok))
        if progress:
            progress(rows[-1])
        return ok

    if not meets(lo):
        return MaxQPS(0.0, False, pd.DataFrame(rows))
    capped = False
    while meets(hi):
        if hi >= cap:
            capped = True
            break
        lo, hi = hi, min(hi * 2, cap)
    if capped:
        return MaxQPS(hi, True, pd.DataFrame(rows))
    while (hi - lo) / hi > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return MaxQPS(lo, False, pd.DataFrame(rows))
