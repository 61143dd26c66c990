"""The accelerator generator: a design file (unit counts, clock, node, SRAM, memory, links) -> a
device document that :func:`hwmodels.spec.parse_device` reads like any GPU's (data:
``hwmodels/generator.yaml``). A design file is a YAML mapping with ``accelerator: NAME``::

    accelerator: my-accel
    description: 4 nm, a quarter of the tensor area MXINT4
    node_nm: 4
    clock_mhz: 1830                 # the clock the peaks are quoted at (boost_clock_mhz: optional, higher)
    cores: 132                      # cores (SMs) that run tiles; spare_cores: on the die, disabled
    units:                          # MAC arrays: MACs per clock per core, or a share of the array area
      bf16: {macs_per_core: 2048}
      fp8: {runs_on: bf16, rate: 2} # runs on the bf16 array's lanes at 2x its rate
      mxint4: {area_share: 0.25}    # a quarter of all dedicated tensor-array area
    sram_mb: 50                     # L2 / global buffer (spare_sram_mb: on the die, disabled)
    memory: {type: hbm3, stacks: 5} # gb_per_stack, tbs_per_stack, spare_stacks: optional
    links: {type: nvlink4, count: 18}   # domain: devices one switch joins (default 8), topology: switch
    host: {type: pcie5, lanes: 16}
    tdp_w: 700                      # optional: else derived (generator.yaml tdp_clock_fraction)

It derives the die area (mm2, by part), the dense peak of every unit, the memory capacity and
bandwidth, and the TDP; energy per FLOP and per byte and static power then come from
``hwmodels/power.yaml`` by the device's node, units and memory type, as for every device.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

import yaml

from mpqsim import InputError, choices_hint

_DOC = yaml.safe_load((resources.files("hwmodels") / "generator.yaml").read_text())
MAC_TRANSISTORS = {k: float(v["value"]) for k, v in _DOC["mac_transistors"].items()}
DENSITY = {int(k): float(v["value"]) for k, v in _DOC["logic_density"].items()}
SRAM = {int(k): float(v["value"]) for k, v in _DOC["sram_mm2_per_mb"].items()}
MEMORIES, LINKS = _DOC["memory_types"], _DOC["link_types"]
DEFAULTS = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in _DOC["defaults"].items()}
AREA_CALIBRATION = resources.files("hwmodels") / "calibration" / "area.json"
TENSOR_UNITS = tuple(k for k in MAC_TRANSISTORS if k != "fp32")
DESIGN_KEYS = ("accelerator", "description", "node_nm", "clock_mhz", "boost_clock_mhz", "cores", "spare_cores",
               "core_sram_kb", "vector_lanes", "int32_lanes", "threads_per_core", "units", "sram_mb", "spare_sram_mb", "memory", "links", "host",
               "tdp_w", "tdp_clock_fraction", "efficiency", "architecture", "misc_fraction")
_UNIT_KEYS = ("macs_per_core", "area_share", "runs_on", "rate", "accepts")


def is_design(doc) -> bool:
    return isinstance(doc, dict) and "accelerator" in doc


def _interp(table: dict, node: float, where: str, what: str) -> float:
    nodes = sorted(table)
    if not nodes[0] <= node <= nodes[-1]:
        raise InputError(f"{where}: node_nm {node:g} outside the {what} table ({nodes[0]}-{nodes[-1]} nm)")
    lo, hi = max(n for n in nodes if n <= node), min(n for n in nodes if n >= node)
    if lo == hi:
        return table[lo]
    w = (node - lo) / (hi - lo)
    return table[lo] ** (1 - w) * table[hi] ** w


def _num(d: dict, key: str, where: str, default=None, positive=True, integer=False):
    v = d.get(key, default)
    if v is None:
        raise InputError(f"{where}: missing {key}")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where}: {key} must be a number, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise InputError(f"{where}: {key} must be {'> 0' if positive else '>= 0'}, got {v}")
    if integer and v != int(v):
        raise InputError(f"{where}: {key} must be a whole number, got {v}")
    return float(v)


def _check_keys(d, valid, where: str) -> None:
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a mapping, got {d!r}")
    bad = sorted(set(d) - set(valid))
    if bad:
        raise InputError(f"{where}: unknown key(s) {', '.join(map(str, bad))}; valid: {', '.join(valid)}")


@lru_cache(maxsize=1)
def misc_fraction() -> float:
    return float(json.loads(AREA_CALIBRATION.read_text())["misc_fraction"])


def generate(doc: dict, where: str) -> dict:
    """A device document (the schema of :mod:`hwmodels.spec`) from a design document."""
    from hwmodels.power import KAPPA, calibration, node_factor, unit_energy_rel

    _check_keys(doc, DESIGN_KEYS, where)
    name = str(doc["accelerator"])
    node = _num(doc, "node_nm", where)
    clock = _num(doc, "clock_mhz", where) * 1e6
    boost = _num(doc, "boost_clock_mhz", where, doc["clock_mhz"]) * 1e6
    if boost < clock:
        raise InputError(f"{where}: boost_clock_mhz is below clock_mhz")
    cores = _num(doc, "cores", where, integer=True)
    phys_cores = cores + _num(doc, "spare_cores", where, 0, positive=False, integer=True)
    density = _interp(DENSITY, node, where, "logic density")  # MTr / mm2
    sram_mm2 = _interp(SRAM, node, where, "SRAM density")
    units = doc.get("units")
    if not isinstance(units, dict) or not units:
        raise InputError(f"{where}: 'units' must map unit kinds ({', '.join(TENSOR_UNITS)}) to "
                         "{macs_per_core: N} | {area_share: F} | {runs_on: UNIT, rate: R}")
    # dedicated arrays: MACs per core given, or a share of the dedicated array area
    per_mac_mm2 = {k: MAC_TRANSISTORS[k] / density / 1e6 for k in MAC_TRANSISTORS}
    macs, shares, shared = {}, {}, {}
    for kind, spec in units.items():
        w = f"{where}: units.{kind}"
        if kind not in TENSOR_UNITS:
            raise InputError(f"{w}: unknown unit kind; valid: {', '.join(TENSOR_UNITS)}")
        _check_keys(spec, _UNIT_KEYS, w)
        given = [k for k in ("macs_per_core", "area_share", "runs_on") if k in spec]
        if len(given) != 1:
            raise InputError(f"{w}: give exactly one of macs_per_core, area_share or runs_on (got {', '.join(given) or 'none'})")
        if "macs_per_core" in spec:
            macs[kind] = _num(spec, "macs_per_core", w, integer=True)
        elif "area_share" in spec:
            shares[kind] = _num(spec, "area_share", w)
            if shares[kind] >= 1:
                raise InputError(f"{w}: area_share is a fraction of the tensor-array area and must be < 1, got {shares[kind]}")
        else:
            shared[kind] = (str(spec["runs_on"]), _num(spec, "rate", w, 1.0))
    if sum(shares.values()) >= 1:
        raise InputError(f"{where}: units' area_share values sum to {sum(shares.values()):.3g}; they must stay below 1 "
                         "(the rest is the arrays given by macs_per_core)")
    fixed_area = sum(macs[k] * cores * per_mac_mm2[k] for k in macs)
    if shares and not macs:
        raise InputError(f"{where}: area_share needs at least one unit given by macs_per_core (it sets the array area)")
    array_area = fixed_area / (1 - sum(shares.values()))
    for k, f in shares.items():
        macs[k] = math.floor(f * array_area / (cores * per_mac_mm2[k]))
    for kind, (host, rate) in shared.items():
        if host not in macs:
            raise InputError(f"{where}: units.{kind}.runs_on names {host!r}, which is not a dedicated array; "
                             f"{choices_hint(macs)}")
    peaks = {k: 2.0 * n * cores * clock for k, n in macs.items()}
    peaks.update({k: rate * peaks[host] for k, (host, rate) in shared.items()})
    vec = _num(doc, "vector_lanes", where, DEFAULTS["vector_lanes"], integer=True)
    threads = _num(doc, "threads_per_core", where, DEFAULTS["threads_per_core"], integer=True)
    peaks["fp32"] = 2.0 * vec * cores * clock
    # 32-bit integer lanes (default: one per vector lane, as the area model of LLMCompass counts them):
    # the rate that bounds per-row weight dequantization (hwmodels.spec.DeviceSpec.dequant_ops)
    int32 = _num(doc, "int32_lanes", where, vec, integer=True)
    area = {"tensor_arrays": array_area * phys_cores / cores,
            "shared_formats": sum(_DOC["shared_format_overhead"]["value"] * macs[h] * per_mac_mm2[h] * phys_cores
                                  for h, _ in shared.values())}
    c = _DOC["core"]
    core_tr = vec * (c["control_per_lane"]["value"] + MAC_TRANSISTORS["fp32"]) + int32 * c["int32_per_lane"]["value"] \
        + c["comm"]["value"]
    area["core_logic"] = phys_cores * core_tr / density / 1e6
    core_kb = _num(doc, "core_sram_kb", where, DEFAULTS["core_sram_kb"], positive=False)
    area["core_sram"] = phys_cores * core_kb / 1024 * sram_mm2
    sram = _num(doc, "sram_mb", where, positive=False)
    area["sram"] = (sram + _num(doc, "spare_sram_mb", where, 0, positive=False)) * sram_mm2
    mem = doc.get("memory")
    _check_keys(mem, ("type", "stacks", "spare_stacks", "gb_per_stack", "tbs_per_stack"), f"{where}: memory")
    if mem.get("type") not in MEMORIES:
        raise InputError(f"{where}: memory.type {mem.get('type')!r} unknown; {choices_hint(MEMORIES)}")
    mt = MEMORIES[mem["type"]]
    stacks = _num(mem, "stacks", f"{where}: memory", integer=True)
    phys_stacks = stacks + _num(mem, "spare_stacks", f"{where}: memory", 0, positive=False, integer=True)
    gb = stacks * _num(mem, "gb_per_stack", f"{where}: memory", mt["gb"])
    tbs = stacks * _num(mem, "tbs_per_stack", f"{where}: memory", mt["tbs"])
    area["memory_phy"] = phys_stacks * mt["phy_mm2"]
    area["memory_ctrl"] = phys_stacks * mt["ctrl_transistors"] / density / 1e6
    links_gbs, interconnect = 0.0, {}
    for key, count_key in (("links", "count"), ("host", "lanes")):
        ln = doc.get(key)
        if ln is None:
            continue
        _check_keys(ln, ("type", count_key) + (("domain", "topology") if key == "links" else ()), f"{where}: {key}")
        if ln.get("type") not in LINKS:
            raise InputError(f"{where}: {key}.type {ln.get('type')!r} unknown; {choices_hint(LINKS)}")
        lt, n = LINKS[ln["type"]], _num(ln, count_key, f"{where}: {key}", integer=True)
        area[f"{key}_phy"] = n * lt["phy_mm2"]
        area[f"{key}_ctrl"] = n * lt["ctrl_transistors"] / density / 1e6
        links_gbs += n * lt["gbs"] if key == "links" else 0.0
        # the device's interconnect: GB/s per direction (link_types give both directions)
        level = dict(link=ln["type"], gbs=n * lt["gbs"] / 2, source="GEN",
                     note=f"{int(n)} x {ln['type']} ({lt['gbs']:g} GB/s both directions each)")
        if key == "links":
            domain = _num(ln, "domain", f"{where}: links", 8, integer=True)
            level.update(topology=str(ln.get("topology", "switch")), domain=int(domain))
        interconnect["scale_up" if key == "links" else "host"] = level
    misc = _num(doc, "misc_fraction", where, misc_fraction(), positive=False)
    area["misc"] = misc * sum(area.values())
    area = {k: round(v, 3) for k, v in area.items() if v > 0}
    area["total"] = round(sum(area.values()), 3)
    # TDP: a dense GEMM on the widest 16-bit array sustaining tdp_clock_fraction of the clock
    cal = calibration()
    high = "bf16" if "bf16" in peaks else ("fp16" if "fp16" in peaks else "fp32")
    e_high = cal["e_flop_pj"]["bf16"] * 1e-12 * node_factor(node) / node_factor(cal["node_nm"]) * unit_energy_rel(high, cal)
    rho = _num(doc, "tdp_clock_fraction", where, DEFAULTS["tdp_clock_fraction"])
    p_gemm = peaks[high] * DEFAULTS["at_cap_efficiency"] * rho ** (1 + KAPPA) * e_high
    tdp_derived = p_gemm / (1 - cal["static_fraction_of_tdp"] - DEFAULTS["traffic_power_fraction"])
    tdp = _num(doc, "tdp_w", where, tdp_derived)
    eff = dict(DEFAULTS["efficiency"])
    if "efficiency" in doc:
        _check_keys(doc["efficiency"], tuple(eff), f"{where}: efficiency")
        eff.update({k: _num(doc["efficiency"], k, f"{where}: efficiency") for k in doc["efficiency"]})
    src = "GEN"
    out = dict(
        name=name, architecture=doc.get("architecture", "generic"),
        description=str(doc.get("description", f"generated accelerator ({node:g} nm)")),
        sources={"GEN": f"derived by hwmodels/generator.py from the design file {where} (hwmodels/generator.yaml: "
                        "LLMCompass area model, power.yaml energies)",
                 "HTA": "launch overheads as the GPU files (hardware_facts 2.3)"},
        memory_capacity_gb={"value": gb, "source": src}, memory_bandwidth_tbs={"value": tbs, "source": src},
        l2_cache_mb={"value": sram or 1e-3, "source": src}, compute_units={"value": cores, "source": src},
        max_threads_per_sm={"value": threads, "source": src},
        int32_tops={"value": 2.0 * int32 * cores * clock / 1e12, "source": src},
        peak_tflops={k: {"value": v / 1e12, "source": src,
                         **({"accepts": units[k]["accepts"]} if k in units and "accepts" in units[k] else {})}
                     for k, v in peaks.items()},
        tdp_w={"value": round(tdp, 1), "source": src,
               "note": f"derived: {tdp_derived:.0f} W" if "tdp_w" in doc else "derived (tdp_clock_fraction)"},
        idle_w={"value": round(0.1 * tdp, 1), "source": src, "note": "10 % of TDP (hardware_facts 4: 10-15 % on HBM parts)"},
        launch_overhead_us={"value": DEFAULTS["launch_overhead_us"], "source": "HTA"},
        launch_overhead_eager_us={"value": DEFAULTS["launch_overhead_eager_us"], "source": "HTA"},
        efficiency={k: {"value": v, "source": src} for k, v in eff.items()},
        process_node_nm={"value": node, "source": src}, memory_type={"value": mem["type"], "source": src},
        peak_clock_mhz={"value": clock / 1e6, "source": src}, boost_clock_mhz={"value": boost / 1e6, "source": src},
        area_mm2=area, energy_basis="node", **({"interconnect": interconnect} if interconnect else {}),
        generated_from=dict(design=where, macs_per_core={k: int(v) for k, v in macs.items()},
                            link_gbs=links_gbs, tdp_derived_w=round(tdp_derived, 1)),
    )
    return out


__all__ = ["generate", "is_design", "misc_fraction", "DESIGN_KEYS"]
