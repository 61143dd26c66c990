"""Energy and power constants of a device (``hwmodels/power.yaml``, data; calibrated on one H100).

:func:`power_model` gives a device's :class:`PowerModel`: energy per FLOP of each unit and per byte
moved (DRAM and on-chip), static power, the power cap and the clock range, in SI units. Every
device gets them by one path: the constants calibrated on the H100 SXM at 4 nm
(``calibration/power.json``, :func:`calibrate`) scaled by the device's process node (SB17
factors), unit kind and memory type; a device file may give its measured ``static_w``.
:attr:`PowerModel.source` says what was measured and what is an estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from mpqsim import FrozenDict, InputError

_DOC = yaml.safe_load((resources.files("hwmodels") / "power.yaml").read_text())
MEMORY_TYPES: dict[str, dict] = _DOC["memory_types"]
NODE_ENERGY: dict[int, float] = {int(k): float(v["value"]) for k, v in _DOC["node_energy"].items()}
UNIT_ENERGY: dict[str, dict] = _DOC["unit_energy"]
KAPPA = float(_DOC["dvfs"]["kappa"]["value"])
MIN_CLOCK = float(_DOC["dvfs"]["min_clock_fraction"]["value"])
CALIBRATION = resources.files("hwmodels") / "calibration" / "power.json"
#: what a device without the numbers is assumed to have (outputs say "estimated")
DEFAULT_NODE_NM, DEFAULT_MEMORY = 5.0, "hbm3"


@dataclass(frozen=True)
class PowerModel:
    """A device's energy and power constants (SI units; energies at the peak clock, s = 1)."""

    e_flop: dict          # unit kind (and "vector") -> J per FLOP at s = 1
    e_dram: float         # J per byte in the DRAM devices (read or write; not clock-scaled)
    e_onchip: float       # J per byte through the on-chip path (L2, network, SM load/store) at s = 1
    static_w: float       # power with clocks up and nothing running (the floor while serving)
    idle_w: float         # power of an idle board (the floor, reported)
    cap_w: float          # the limit the clock drops to respect
    kappa: float          # energy per operation ~ s^kappa
    s_max: float          # boost clock / peak clock
    s_min: float          # lowest clock / peak clock
    peak_clock_hz: float  # clock of s = 1 (the datasheet peaks' clock)
    node_nm: float
    memory_type: str
    source: str           # what is measured and what is an estimate


def node_factor(node_nm: float) -> float:
    """Energy per operation at ``node_nm`` relative to 45 nm (interpolated between listed nodes)."""
    nodes = sorted(NODE_ENERGY)
    if not nodes[0] <= node_nm <= nodes[-1]:
        raise InputError(f"process node {node_nm} nm outside the energy table ({nodes[0]}-{nodes[-1]} nm)")
    lo = max(n for n in nodes if n <= node_nm)
    hi = min(n for n in nodes if n >= node_nm)
    if lo == hi:
        return NODE_ENERGY[lo]
    w = (node_nm - lo) / (hi - lo)
    return NODE_ENERGY[lo] ** (1 - w) * NODE_ENERGY[hi] ** w


def unit_energy_rel(unit: str, cal: dict) -> float:
    """Energy per FLOP of ``unit`` relative to bf16 (power.yaml ``unit_energy``; calibrated ones from ``cal``)."""
    e = UNIT_ENERGY.get(unit)
    if e is None:
        raise InputError(f"no energy figure for unit kind {unit!r}; known: {', '.join(UNIT_ENERGY)}")
    if e.get("calibrated"):
        return cal["e_flop_pj"][unit] / cal["e_flop_pj"]["bf16"]
    if "like" in e:
        return unit_energy_rel(e["like"], cal) * float(e["factor"])
    return float(e["value"])


@lru_cache(maxsize=1)
def calibration() -> dict:
    return json.loads(CALIBRATION.read_text())


def power_model(dev) -> PowerModel:
    """The :class:`PowerModel` of a :class:`hwmodels.spec.DeviceSpec`."""
    high = dev.high_unit
    return _power_model(dev.name, dev.node_nm, dev.memory_type, dev.peak_clock_hz, dev.boost_clock_hz, dev.static_w,
                        dev.power_cap_w, dev.tdp_w, dev.idle_w, tuple(dev.units) + ("vector",), dev.energy_basis,
                        high, dev.peak(high), dev.bandwidth)


@lru_cache(maxsize=256)
def _power_model(name, node, mem, peak_hz, boost_hz, static_w, cap_w, tdp_w, idle_w, units, basis, high, peak_high,
                 bandwidth) -> PowerModel:
    cal = calibration()
    said = []
    if node is None:
        node = DEFAULT_NODE_NM
        said.append(f"process node not in the device file: {node:g} nm assumed")
    if mem is None:
        mem = DEFAULT_MEMORY
        said.append(f"memory type not in the device file: {mem} assumed")
    if peak_hz is None:
        said.append("clocks not in the device file: the compute peaks taken as the highest clock")
    s_max = (boost_hz / peak_hz) if (peak_hz and boost_hz) else 1.0
    measured = static_w is not None
    if static_w is None:
        static_w = max(idle_w, cal["static_fraction_of_tdp"] * tdp_w)
    e_dram = MEMORY_TYPES[mem]["pj_per_bit"] * 8e-12
    calibrated = name == cal["reference_device"]
    if calibrated or basis == "node":
        scale = node_factor(node) / node_factor(cal["node_nm"])
        e_bf16 = cal["e_flop_pj"]["bf16"] * 1e-12 * scale
        e_on = cal["e_onchip_pj_per_byte"] * 1e-12 * scale
        src = ("energies calibrated on this device (calibration/power.json)" if calibrated else
               f"energies scaled from the {cal['reference_device']} calibration by process node ({node:g} vs "
               f"{cal['node_nm']:g} nm): estimates")
    else:  # a product's TDP is set for its silicon: its dense 16-bit GEMM sustains the reference's clock at the cap
        t = cal["transfer"]
        e_bf16 = ((1 - cal["static_fraction_of_tdp"] - t["traffic_fraction"]) * tdp_w
                  / (t["at_cap_efficiency"] * peak_high * t["clock_fraction"] ** (1 + KAPPA))
                  / unit_energy_rel(high, cal))
        # and a stream at its achieved copy rate draws the reference's share of its TDP
        e_stream = t["copy_fraction"] * tdp_w / (bandwidth * t["copy_efficiency"])
        e_on = max(e_stream - e_dram, 0.25 * e_stream) / t["copy_clock_fraction"] ** KAPPA
        src = (f"energies transferred from the {cal['reference_device']} calibration by this device's TDP: a dense "
               f"{high} GEMM sustains {t['clock_fraction']:.2f} of the peak clock at the cap and a memory stream draws "
               f"{t['copy_fraction']:.2f} of the TDP, as measured there (estimates)")
    e_flop = FrozenDict({u: e_bf16 * unit_energy_rel(u, cal) for u in units})
    cap = cap_w if cap_w is not None else tdp_w
    if cap <= static_w:
        raise InputError(f"device {name}: power cap {cap:g} W is not above its static power {static_w:.0f} W")
    src += "; static power " + ("measured" if measured else f"{cal['static_fraction_of_tdp']:.3f} x TDP (estimate)")
    if said:
        src += "; " + "; ".join(said)
    return PowerModel(e_flop=e_flop, e_dram=e_dram, e_onchip=e_on, static_w=float(static_w),
                      idle_w=float(idle_w), cap_w=float(cap), kappa=KAPPA, s_max=float(s_max), s_min=MIN_CLOCK,
                      peak_clock_hz=float(peak_hz or boost_hz or 0.0), node_nm=float(node), memory_type=mem,
                      source=src)


# ---------------------------------------------------------------- calibration on the H100 microbenchmark
def calibrate(csv_path: Path, device: str = "h100-sxm") -> dict:
    """Energy constants from the H100 power microbenchmark (closed form; every phase is used):

    * static_w: the ``idle`` phase (clocks up, nothing running), also as a fraction of TDP;
    * e_onchip: the copy phase, (P - static) / bytes/s minus the DRAM devices' energy, at its clock;
    * e_flop per unit: each GEMM phase at the cap, (P - static - its bytes' power) / FLOP/s at its
      clock, brought to s = 1 by s^kappa.
    """
    import pandas as pd

    from hwmodels.spec import load_device

    dev = load_device(device)
    d = pd.read_csv(csv_path).set_index("phase")
    static = float(d.loc["idle", "board_power_w"])
    e_dram = MEMORY_TYPES[dev.memory_type]["pj_per_bit"] * 8e-12
    peak = dev.peak_clock_hz
    c = d.loc["copy_1GiB"]
    s_copy = c.sm_clock_mhz * 1e6 / peak
    bw = c.work_per_iter / (c.ms_per_iter * 1e-3)
    e_on = ((c.board_power_w - static) / bw - e_dram) / s_copy ** KAPPA
    n = 8192
    gemm_bytes = {"bf16": 3 * n * n * 2, "fp8": 2 * n * n + 2 * n * n, "int8": 2 * n * n + 4 * n * n}
    e_flop, rows = {}, []
    for unit, nbytes in gemm_bytes.items():
        g = d.loc[f"gemm8192_{unit}"]
        t = g.ms_per_iter * 1e-3
        s = g.sm_clock_mhz * 1e6 / peak
        p_mem = nbytes / t * (e_dram + e_on * s ** KAPPA)
        e = (g.board_power_w - static - p_mem) / (g.work_per_iter / t)
        e_flop[unit] = e / s ** KAPPA * 1e12
        rows.append(dict(phase=f"gemm8192_{unit}", tflops=g.work_per_iter / t / 1e12, clock_mhz=float(g.sm_clock_mhz),
                         power_w=float(g.board_power_w), memory_w=p_mem))
    b = d.loc["gemm8192_bf16"]
    t_b = b.ms_per_iter * 1e-3
    s_b = b.sm_clock_mhz * 1e6 / peak
    transfer = dict(clock_fraction=s_b, at_cap_efficiency=(b.work_per_iter / t_b) / (dev.peak("bf16") * s_b),
                    traffic_fraction=rows[0]["memory_w"] / b.board_power_w,
                    copy_fraction=(c.board_power_w - static) / dev.tdp_w, copy_efficiency=bw / dev.bandwidth,
                    copy_clock_fraction=s_copy,
                    note="how a device with a TDP but no measurements gets its energies (energy_basis: tdp)")
    return dict(reference_device=device, node_nm=dev.node_nm, memory_type=dev.memory_type, kappa=KAPPA,
                transfer=transfer,
                static_w=static, static_fraction_of_tdp=static / dev.tdp_w,
                e_onchip_pj_per_byte=e_on * 1e12, e_dram_pj_per_byte=e_dram * 1e12,
                e_flop_pj={k: round(v, 6) for k, v in e_flop.items()},
                fitted_to=str(csv_path.name), phases=rows,
                note=("closed form: each constant from one phase of the microbenchmark, so the fit itself has no "
                      "residual; benchmarks/power.py reports how the cost model (time model + these constants) "
                      "reproduces each phase's clock, throughput and power, and the transfer to other devices"))


__all__ = ["PowerModel", "power_model", "calibrate", "calibration", "node_factor", "MEMORY_TYPES", "KAPPA"]
