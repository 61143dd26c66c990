"""Collectives over a device's interconnect: a latency + bandwidth model, calibrated on NCCL timings.

``price_collective(device, collective, n_devices, size_bytes, devices_per_node=None)`` -> a
:class:`CollectiveCost` (``time_s`` for each size, the algorithm and the link level assumed).
``size_bytes`` is the buffer of one device (an all-reduce's input = output; an all-gather's
*output*; a reduce-scatter's *input*; an all-to-all's send buffer; a send/recv's message).

For ``n`` devices, ``p`` per node (default: the device's scale-up domain)::

    time = alpha0 + steps x alpha_step(family) + size x factor / (efficiency(family) x gbs)

* the **level** whose link carries the traffic: one node -> the scale-up link (NVSwitch or a mesh;
  a pairwise bridge only for 2 devices, else the host's PCIe); several nodes -> the scale-out
  network, ``p`` rings over ``p`` NICs (``p x`` the per-GPU network bandwidth, at most the node's
  NIC count, and capped by the scale-up link);
* **algorithms** (NCCL's, and optionally a custom one-shot all-reduce inside an NVLink domain,
  priced as one round of peer writes: a send/recv's fixed cost, ``n - 1`` buffers inbound): ring (all-reduce 2(n-1) steps moving 2(n-1)/n of the buffer;
  all-gather, reduce-scatter and all-to-all n-1 steps moving (n-1)/n; send/recv one step), tree for
  an all-reduce across nodes (2 log2 n steps moving 2x the buffer: wins on small buffers), and
  NVLink SHARP (NVLS) on a switch that reduces in the fabric (2 steps, the buffer once each way);
  the fastest applicable one is reported;
* ``alpha0`` (a collective's fixed launch and synchronisation cost; ``alpha0_p2p`` for a
  send/recv, which synchronises two devices only, and ``p2p_speedup``: a send/recv streams one way with
  nothing to reduce, faster per byte than a collective's link use), ``alpha_step`` and
  ``efficiency`` (achieved fraction of the link's datasheet bandwidth) per link family (nvlink,
  network, pcie: hwmodels/links.yaml), fitted by :func:`fit` on
  ``benchmarks/data/measured/nccl_a100_dgx.csv`` and stored in
  ``hwmodels/calibration/collectives.json``; another system prices with its own link numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from hwmodels.links import FAMILIES, LINK_KINDS
from hwmodels.spec import DeviceSpec, Interconnect, Link, load_device
from mpqsim import InputError, choices_hint
from workloads.optable import COLLECTIVES

CALIBRATION = resources.files("hwmodels") / "calibration" / "collectives.json"
#: NVLS (in-switch reduction) moves the buffer once each way; measured gains over the ring are smaller
#: than that factor implies, so its bandwidth term carries this efficiency relative to the ring's (estimate:
#: NCCL NVLS all-reduce on H100 reaches ~1.3x the ring's bus bandwidth, not 1.75x)
NVLS_EFFICIENCY = 0.75
#: the estimates used for a family with no fit (and the start of the fit)
ESTIMATES = {"alpha0_us": 8.0, "alpha0_p2p_us": 5.0, "p2p_speedup": 1.0, "nvlink": dict(alpha_step_us=0.7, efficiency=0.6),
             "network": dict(alpha_step_us=5.0, efficiency=0.5), "pcie": dict(alpha_step_us=2.0, efficiency=0.6)}


@dataclass(frozen=True)
class CollectiveCost:
    """What :func:`price_collective` returns (times per size)."""

    collective: str
    n_devices: int
    devices_per_node: int
    size_bytes: np.ndarray
    time_s: np.ndarray
    algorithm: np.ndarray     # ring, tree, nvls or direct (send/recv) per size
    level: str                # scale_up, scale_out or host
    link: str                 # the link kind (nvlink4, infiniband, pcie5, ...)
    bus_gbs: np.ndarray       # bus bandwidth achieved: size x ring factor / time, GB/s


@lru_cache(maxsize=1)
def constants() -> dict:
    """The fitted constants (calibration/collectives.json), else the estimates."""
    if CALIBRATION.is_file():
        return json.loads(CALIBRATION.read_text())["constants"]
    return dict(alpha0_us=ESTIMATES["alpha0_us"], alpha0_p2p_us=ESTIMATES["alpha0_p2p_us"], p2p_speedup=1.0,
                **{f: ESTIMATES[f] for f in FAMILIES})


#: GPUs in one server when the device has no switched scale-up domain (PCIe cards, pairwise bridges)
SERVER_GPUS = 8


def per_node(ic: Interconnect) -> int:
    """Devices per node by default: the scale-up domain of a switch or mesh, else a server of 8 cards."""
    up = ic.scale_up
    if up is not None and up.topology in ("switch", "mesh"):
        return up.domain
    return SERVER_GPUS


def _level(ic: Interconnect, n: int, p: int) -> tuple[str, Link]:
    nodes = math.ceil(n / p)
    up = ic.scale_up
    if nodes > 1:
        if ic.scale_out is None:
            raise InputError(f"{n} devices at {p} per node span {nodes} nodes, but the device lists no scale-out "
                             "network (interconnect.scale_out)")
        return "scale_out", ic.scale_out
    if up is not None and n <= up.domain and (up.topology in ("switch", "mesh") or n == 2):
        return "scale_up", up
    if ic.host is None:
        raise InputError(f"{n} devices cannot talk: the device lists neither a scale-up link for them nor a host link")
    return "host", ic.host


def _check(collective: str, n, size=None):
    if collective not in COLLECTIVES:
        raise InputError(f"unknown collective {collective!r}; {choices_hint(COLLECTIVES)}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"number of devices must be a whole number >= 1, got {n!r}")
    if collective == "send_recv" and n != 2:
        raise InputError(f"send_recv is between 2 devices, got {n}")
    if size is not None and (not np.all(np.isfinite(size)) or np.any(size < 0)):
        raise InputError("collective sizes must be finite byte counts >= 0")


def algorithms(ic: Interconnect, collective: str, n: int, devices_per_node: int | None = None,
               params: dict | None = None, oneshot: bool = False) -> tuple[list, str, Link, int]:
    """([(algorithm, alpha s, s per byte)], level, link, devices per node): the lines whose lower
    envelope is the collective's time (one per applicable algorithm)."""
    _check(collective, n)
    c = params or constants()
    if devices_per_node is not None and devices_per_node < 1:
        raise InputError(f"devices per node must be >= 1, got {devices_per_node}")
    p = int(min(devices_per_node or per_node(ic), n))
    level, link = _level(ic, n, p)
    fam = LINK_KINDS[link.kind]["family"]
    k = c.get(fam) or ESTIMATES[fam]
    a0 = (c["alpha0_p2p_us"] if collective == "send_recv" else c["alpha0_us"]) * 1e-6
    a_step, bw = k["alpha_step_us"] * 1e-6, link.gbs * k["efficiency"]
    if level == "scale_out":  # p rings over p NICs (one per GPU), none faster than the scale-up link inside a node
        up = ic.scale_up
        rings = min(p, link.nics) if link.nics else p
        bw = min(bw * rings, (up.gbs * (c.get(LINK_KINDS[up.kind]["family"]) or ESTIMATES["nvlink"])["efficiency"])
                 if up is not None and p > 1 else math.inf)
    options = []
    if collective == "all_reduce":
        options.append(("ring", 2 * (n - 1), 2 * (n - 1) / n))
        if level == "scale_out":
            options.append(("tree", 2 * math.ceil(math.log2(n)), 2.0))
        if level == "scale_up" and link.sharp and link.topology == "switch":
            options.append(("nvls", 2, 1.0 / NVLS_EFFICIENCY))
    elif collective == "send_recv":  # one direction, nothing to reduce: faster per byte than a collective's link use
        options.append(("direct", 1, 1.0 / c["p2p_speedup"]))
    else:
        options.append(("ring", n - 1, (n - 1) / n))
    lines = [(name, a0 + steps * a_step, factor / bw) for name, steps, factor in options]
    if oneshot and collective == "all_reduce" and level == "scale_up" and link.topology in ("switch", "mesh"):
        # one round of peer writes (a send/recv's cost), n - 1 buffers inbound per GPU, reduced locally
        lines.append(("oneshot", c["alpha0_p2p_us"] * 1e-6 + a_step, (n - 1) / (c["p2p_speedup"] * bw)))
    return lines, level, link, p


def collective_time(ic: Interconnect, collective: str, n: int, size, devices_per_node: int | None = None,
                    params: dict | None = None, oneshot: bool = False):
    """(time s, algorithm, level, link, p) of one collective (``size`` bytes, an array) on ``ic``."""
    size = np.atleast_1d(np.asarray(size, dtype=float))
    _check(collective, n, size)
    if n == 1:
        p = int(min(devices_per_node or per_node(ic), 1))
        return np.zeros_like(size), np.full(size.shape, "none", dtype=object), "none", "none", p
    lines, level, link, p = algorithms(ic, collective, n, devices_per_node, params, oneshot)
    times = np.stack([a + size * b for _, a, b in lines])
    best = times.argmin(axis=0)
    return times.min(axis=0), np.array([x[0] for x in lines], dtype=object)[best], level, link.kind, p


def price_collective(device: str | DeviceSpec, collective: str, n_devices: int, size_bytes,
                     devices_per_node: int | None = None, oneshot: bool = False) -> CollectiveCost:
    """Time of one collective among ``n_devices`` devices of this kind (sizes: an array of bytes).
    ``oneshot``: an all-reduce may also run as a custom one-shot kernel inside an NVLink domain (what
    vLLM and TensorRT-LLM do for small buffers; NCCL's algorithms otherwise, as measured)."""
    dev = load_device(device) if isinstance(device, str) else device
    size = np.atleast_1d(np.asarray(size_bytes, dtype=float))
    t, algo, level, link, p = collective_time(dev.interconnect, collective, n_devices, size, devices_per_node,
                                              oneshot=oneshot)
    ring = {"all_reduce": 2 * (n_devices - 1) / n_devices, "send_recv": 1.0}.get(collective, (n_devices - 1) / n_devices)
    bus = np.divide(size * ring, t, out=np.zeros_like(size), where=t > 0) / 1e9
    return CollectiveCost(collective, int(n_devices), p, size, t, algo, level, link, bus)


# ---------------------------------------------------------------- calibration on the NCCL data
#: The two measured systems (README of the data): DGX A100 (NVSwitch; one 200 Gb/s HDR NIC per GPU)
#: and A100s bridged pairwise by NVLink (the rest through PCIe 4).
SYSTEMS = {
    # cross-node bus bandwidth grows with GPUs per node up to 4 and no further (22 GB/s): 4 NICs' worth
    "a100_dgx": Interconnect(scale_up=Link("nvlink3", 300e9, "switch", 8), scale_out=Link("infiniband", 25e9, nics=4),
                             host=Link("pcie4", 32e9)),
    "a100_pairwise_nvlink": Interconnect(scale_up=Link("nvlink3", 300e9, "pairwise", 2), host=Link("pcie4", 32e9)),
}
#: held out of the fit: every fourth size, and one topology entirely (8 GPUs, 4 per node, across nodes)
HELD_OUT_TOPOLOGY = ("a100_dgx", "all_reduce", 8, 4)


def measurements(path: Path) -> pd.DataFrame:
    """The NCCL timings with the family each one exercises and the split. The pairwise system's
    cross-node rows (its network is not described) are left out."""
    d = pd.read_csv(path)
    d = d[~((d.system == "a100_pairwise_nvlink") & (d.devices_per_node < d.num_workers))].copy()
    d["time_s"] = d.time_ms_median * 1e-3
    d["family"] = [LINK_KINDS[_level(SYSTEMS[s], int(n), int(p))[1].kind]["family"]
                   for s, n, p in zip(d.system, d.num_workers, d.devices_per_node)]
    rank = d.groupby(["system", "collective", "num_workers", "devices_per_node"]).size_bytes.rank(method="first")
    topo = (d.system == HELD_OUT_TOPOLOGY[0]) & (d.collective == HELD_OUT_TOPOLOGY[1]) & \
        (d.num_workers == HELD_OUT_TOPOLOGY[2]) & (d.devices_per_node == HELD_OUT_TOPOLOGY[3])
    d["held_out"] = topo | (rank % 4 == 0)
    d["held_out_topology"] = topo
    return d.reset_index(drop=True)


def predict(d: pd.DataFrame, params: dict | None = None) -> np.ndarray:
    out = np.empty(len(d))
    for (s, c, n, p), g in d.groupby(["system", "collective", "num_workers", "devices_per_node"]):
        out[g.index.to_numpy()] = collective_time(SYSTEMS[s], c, int(n), g.size_bytes.to_numpy(), int(p), params)[0]
    return out


def _pack(x) -> dict:
    return {"alpha0_us": float(x[0]), "alpha0_p2p_us": float(x[1]), "p2p_speedup": float(x[2]),
            **{f: dict(alpha_step_us=float(x[3 + 2 * i]), efficiency=float(x[4 + 2 * i])) for i, f in enumerate(FAMILIES)}}


def fit(d: pd.DataFrame) -> dict:
    """alpha0 and (alpha_step, efficiency) per family by least squares on log time (calibration rows)."""
    from scipy.optimize import least_squares

    cal = d[~d.held_out].reset_index(drop=True)
    x0 = [ESTIMATES["alpha0_us"], ESTIMATES["alpha0_p2p_us"], 1.0] + [
        v for f in FAMILIES for v in (ESTIMATES[f]["alpha_step_us"], ESTIMATES[f]["efficiency"])]
    lo = [0.0, 0.0, 1.0] + [0.0, 0.01] * len(FAMILIES)
    hi = [200.0, 200.0, 2.0] + [100.0, 1.0] * len(FAMILIES)
    r = least_squares(lambda x: np.log(predict(cal, _pack(x)) / cal.time_s.to_numpy()), x0, bounds=(lo, hi),
                      x_scale=[1.0, 1.0, 0.1] + [1.0, 0.1] * len(FAMILIES), diff_step=1e-3)
    return _pack(r.x)


def errors(d: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
    pred = predict(d, params)
    return d.assign(predicted_s=pred, abs_err_pct=100 * np.abs(pred / d.time_s - 1), ratio=pred / d.time_s)


def lowered_terms(ic: Interconnect, collective: str, n: int, devices_per_node: int | None = None,
                  oneshot: bool = False) -> tuple:
    """The collective as the cost model prices it: (alpha1, s/byte1, alpha2, s/byte2, J per byte of
    buffer on the link): its time is min over the (at most two) algorithm lines; one device: free."""
    if n <= 1:
        return (0.0, 0.0, math.inf, 0.0, 0.0)
    lines, _, link, _ = algorithms(ic, collective, n, devices_per_node, oneshot=oneshot)
    if len(lines) > 2:  # keep the two that matter: the lowest alpha and the lowest slope
        lines = [min(lines, key=lambda x: x[1]), min(lines, key=lambda x: x[2])]
    (_, a1, b1), (_, a2, b2) = lines[0], (lines[1] if len(lines) > 1 else ("", math.inf, 0.0))
    wire = {"all_reduce": 2 * (n - 1) / n, "send_recv": 1.0}.get(collective, (n - 1) / n)
    return (a1, b1, a2, b2, LINK_KINDS[link.kind]["pj_per_bit"] * 8e-12 * wire)


__all__ = ["price_collective", "CollectiveCost", "collective_time", "constants", "fit", "measurements", "errors",
           "SYSTEMS", "lowered_terms", "per_node"]
