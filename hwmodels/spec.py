"""Device specs: hardware is data (one YAML file per device, every number with its source).

File schema (units are in the key names; GB and TB/s are decimal, 1e9 and 1e12)::

    name: h100-sxm
    architecture: hopper          # optional: the kernel constants it shares (hwmodels/kernels.yaml)
    description: NVIDIA H100 SXM5 80GB
    sources:                      # key -> citation; every number names one of these keys
      NV-H100: NVIDIA H100 datasheet, https://...
    memory_capacity_gb:   {value: 80, source: NV-H100}
    memory_bandwidth_tbs: {value: 3.35, source: NV-H100}
    l2_cache_mb:          {value: 50, source: NV-H100}
    compute_units:        {value: 132, source: NV-H100}        # SMs / CUs
    peak_tflops:                                               # dense, per compute unit kind
      bf16: {value: 989, source: NV-H100}
      fp8:  {value: 1979, source: NV-H100}
      mxfp4: {value: 9000, source: MLE, accepts: [mxfp4_32]}   # accepts: optional override
    tdp_w:                {value: 700, source: NV-H100}
    idle_w:               {value: 70, source: SMI-snap}
    # power model (hwmodels/power.yaml); all optional, each with its source:
    process_node_nm:      {value: 4, source: NV-H100}      # energy per op scales by node
    memory_type:          {value: hbm3, source: NV-H100}   # a key of power.yaml memory_types
    peak_clock_mhz:       {value: 1830, source: MLE}       # the clock the datasheet peaks are quoted at
    boost_clock_mhz:      {value: 1980, source: H100-PWR}  # the highest SM clock
    static_w:             {value: 136.4, source: H100-PWR} # measured power with clocks up, nothing running
    power_cap_w:          {value: 700, source: ...}        # default tdp_w; --power-cap W sets it
    launch_overhead_us:   {value: 1.5, source: HWF}            # per kernel, CUDA-graph launched
    launch_overhead_eager_us: {value: 4.0, source: HWF}
    efficiency:                                                # fractions of peak reached
      compute: {value: 0.80, source: MLE}                       # large GEMMs
      compute_by_unit:                                          # optional: per unit, overrides compute
        int8: {value: 0.45, source: H100-meas}
      compute_m_min: {value: 16, source: DEFAULT}               # smaller GEMMs pay for a full tile
      memory:  {value: 0.80, source: ...}                        # streaming reads
      vector:  {value: 0.50, source: DEFAULT}                    # element-wise ops on the non-tensor units

Each entry may carry a ``note`` (why an estimate is plausible, how a figure was derived).
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from mpqsim import FrozenDict, InputError, bundled_files, choices_hint

#: Compute-unit kinds a device may list, and the format unit keys each accepts by default
#: (see ``quant.formats.Format.unit_keys``); MX units take OCP blocks of 32.
UNIT_ACCEPTS: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32",), "tf32": (), "bf16": ("bf16",), "fp16": ("fp16",),
    "fp8": ("fp8",), "int8": ("int8",), "int4": ("int4",), "fp6": ("fp6",), "fp4": ("fp4",),
    "mxfp8": ("mxfp8_32",), "mxfp6": ("mxfp6_32",), "mxfp4": ("mxfp4_32",),
    "mxint8": ("mxint8_32",), "mxint4": ("mxint4_32",), "nvfp4": ("nvfp4_16",),
}

#: What a unit's ``accepts`` list may name: the unit keys of ``quant.formats.Format.unit_keys``
#: (plain element types, and MX types with their block size).
UNIT_KEY_RE = re.compile(r"(fp32|bf16|fp16|fp8|fp6|fp4|int8|int4|mxint[48]_\d+|mxfp[468]_\d+|nvfp4_16)")
UNIT_KEY_HELP = "fp32, bf16, fp16, fp8, fp6, fp4, int8, int4, mxint{4,8}_BLOCK, mxfp{4,6,8}_BLOCK (e.g. mxint4_32), nvfp4_16"

_SCALARS = ("memory_capacity_gb", "memory_bandwidth_tbs", "l2_cache_mb", "compute_units", "tdp_w",
            "idle_w", "launch_overhead_us", "launch_overhead_eager_us")
_EFFICIENCY = ("compute", "compute_m_min", "memory", "vector")
#: Optional numbers of the power model (hwmodels/power.py), and their defaults when absent.
_POWER_SCALARS = ("process_node_nm", "peak_clock_mhz", "boost_clock_mhz", "static_w", "power_cap_w")
_OPTIONAL_SCALARS = ("max_threads_per_sm", "int32_tops")
#: Resident threads per SM (CU) when the file does not say: the CUDA C++ Programming Guide's value for
#: compute capability 8.0 / 9.0 / 10.0 (the data-centre SMs); 8.6 / 8.9 / 12.0 SMs hold 1536.
DEFAULT_THREADS_PER_SM = 2048


@dataclass(frozen=True)
class ComputeUnit:
    """One kind of compute unit: dense peak (FLOP/s) and the format unit keys it takes."""

    kind: str
    peak_flops: float
    accepts: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Link:
    """One level of a device's interconnect (``interconnect:`` in the device file)."""

    kind: str                 # a key of hwmodels/links.yaml kinds (nvlink4, infiniband, pcie5, ...)
    gbs: float                # GB/s per GPU, one direction
    topology: str = "switch"  # scale_up only: switch, pairwise or mesh (links.yaml topologies)
    domain: int = 1           # scale_up only: GPUs in the domain (an NVSwitch node: 8)
    sharp: bool = False       # scale_up only: in-switch reductions (NVLink SHARP / NVLS)
    source: str = ""
    nics: int = 0             # scale_out only: NICs per node (0 = one per GPU of the scale-up domain)


@dataclass(frozen=True)
class Interconnect:
    """How a device talks to others: its scale-up domain, the network between domains, its host link."""

    scale_up: Link | None = None
    scale_out: Link | None = None
    host: Link | None = None


@dataclass(frozen=True)
class DeviceSpec:
    """A device, in SI units (bytes, bytes/s, FLOP/s, W, s). Built by :func:`load_device`."""

    name: str
    description: str
    memory_bytes: float
    bandwidth: float               # bytes/s, peak
    l2_bytes: float
    compute_units: int
    units: dict[str, ComputeUnit]      # (read-only mapping once loaded)
    tdp_w: float
    idle_w: float
    launch_s: float                # per kernel, graph-launched
    launch_eager_s: float          # per kernel, eager launch
    eff_compute: float             # fraction of peak reached by large GEMMs
    eff_m_min: float               # GEMM rows (M) of the smallest MMA tile; fewer rows cost a full tile
    eff_memory: float              # fraction of peak bandwidth reached by streaming reads
    eff_vector: float              # fraction of the fp32 vector peak reached by element-wise ops
    eff_compute_by_unit: dict = field(default_factory=dict)  # unit -> fraction, where measured
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    path: str = ""
    architecture: str = "generic"  # whose GEMM kernel constants it uses (hwmodels/kernels.yaml)
    # power model inputs (hwmodels/power.py); None where the file does not say (then estimated)
    node_nm: float | None = None           # process node, nm
    memory_type: str | None = None         # a key of hwmodels/power.yaml memory_types
    peak_clock_hz: float | None = None     # the SM clock the datasheet peaks are quoted at
    boost_clock_hz: float | None = None    # the highest SM clock
    static_w: float | None = None          # measured power with clocks up and nothing running
    power_cap_w: float | None = None       # board power limit the clock drops to respect (default tdp_w)
    energy_basis: str = "tdp"              # energies from the TDP (a product) or the node (a design): power.yaml
    interconnect: Interconnect = field(default_factory=Interconnect)  # links (collectives), where the file says
    area: dict = field(default_factory=dict, repr=False, compare=False)  # mm2 by part, where known (generated)
    max_threads_per_sm: int = DEFAULT_THREADS_PER_SM  # resident threads per SM: the concurrency of latency-bound kernels
    int32_ops: float | None = None  # non-tensor 32-bit integer op/s (multiply-add = 2), where the file says

    def peak(self, kind: str) -> float:
        return self.units[kind].peak_flops if kind in self.units else 0.0

    def compute_efficiency(self, kind: str) -> float:
        """Fraction of ``kind``'s peak that large GEMMs reach (per-unit value if the file has one)."""
        return self.eff_compute_by_unit.get(kind, self.eff_compute)

    @property
    def high_unit(self) -> str:
        """The unit that runs dequantized (up-cast) ops: bf16 if present, else fp16, else fp32."""
        for k in ("bf16", "fp16", "fp32"):
            if k in self.units:
                return k
        raise InputError(f"device {self.name}: no bf16, fp16 or fp32 unit to run up-cast ops on")

    @property
    def vector_flops(self) -> float:
        """Non-tensor (CUDA-core) rate used for element-wise ops."""
        return self.peak("fp32") or self.peak(self.high_unit)

    @property
    def dequant_ops(self) -> float:
        """The rate that bounds per-row weight dequantization on the non-tensor units (op/s).

        Unpacking 4-bit weights is integer bit work (``lop3``/shift per pair of weights) interleaved
        with packed 16-bit FMAs, issued from the same SM; its rate follows the SM's 32-bit integer
        lanes, which Hopper and Ada kept at Ampere's 64 per SM while doubling the fp32 lanes. Files
        give it as ``int32_tops``; one that does not is priced on its fp32 vector rate."""
        return self.int32_ops or self.vector_flops


DEVICE_DIR = "devices"


def _bundled() -> dict:
    return bundled_files("hwmodels", DEVICE_DIR, ".yaml")


def bundled_devices() -> list[str]:
    return sorted(_bundled())


def _number(entry, where: str, sources: dict, positive: bool = True) -> tuple[float, str]:
    if not isinstance(entry, dict) or "value" not in entry:
        raise InputError(f"{where}: expected a mapping with 'value' and 'source', got {entry!r}")
    v, src = entry["value"], entry.get("source")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{where}: value must be a finite number, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise InputError(f"{where}: value must be {'> 0' if positive else '>= 0'}, got {v}")
    if not src:
        raise InputError(f"{where}: every number needs a 'source' (a key of 'sources')")
    if src not in sources:
        raise InputError(f"{where}: source {src!r} is not listed under 'sources'; "
                         f"{choices_hint(sources)}")
    return float(v), src


def parse_device(doc, where: str, overrides: dict | None = None) -> DeviceSpec:
    """Validate a device document (as loaded from YAML) and build a :class:`DeviceSpec`."""
    if not isinstance(doc, dict):
        raise InputError(f"{where}: a device file must be a YAML mapping")
    doc = _apply_overrides(doc, overrides or {}, where)
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise InputError(f"{where}: missing 'sources' (key -> citation for every number)")
    missing = [k for k in ("name", "peak_tflops", "efficiency", *_SCALARS) if k not in doc]
    if missing:
        raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
    val = {k: _number(doc[k], f"{where}: {k}", sources, positive=k != "idle_w")[0] for k in _SCALARS}
    peaks = doc["peak_tflops"]
    if not isinstance(peaks, dict) or not peaks:
        raise InputError(f"{where}: 'peak_tflops' must map unit kinds to numbers")
    units = {}
    for kind, entry in peaks.items():
        if kind not in UNIT_ACCEPTS:
            raise InputError(f"{where}: unknown compute unit {kind!r}; {choices_hint(UNIT_ACCEPTS)}")
        v, src = _number(entry, f"{where}: peak_tflops.{kind}", sources)
        accepts = entry.get("accepts", UNIT_ACCEPTS[kind])
        if not isinstance(accepts, (list, tuple)) or not all(isinstance(a, str) for a in accepts):
            raise InputError(f"{where}: peak_tflops.{kind}.accepts must be a list of unit keys ({UNIT_KEY_HELP})")
        bad = [a for a in accepts if not UNIT_KEY_RE.fullmatch(a)]
        if bad:
            raise InputError(f"{where}: peak_tflops.{kind}.accepts names unknown unit key {bad[0]!r}; "
                             f"valid: {UNIT_KEY_HELP}")
        extra = set(entry) - {"value", "source", "note", "accepts"}
        if extra:
            raise InputError(f"{where}: peak_tflops.{kind} has unknown key(s) {', '.join(sorted(extra))}; "
                             "valid: value, source, note, accepts")
        units[kind] = ComputeUnit(kind, v * 1e12, tuple(accepts), src)
    eff = doc["efficiency"]
    if not isinstance(eff, dict):
        raise InputError(f"{where}: 'efficiency' must be a mapping")
    missing = [k for k in _EFFICIENCY if k not in eff]
    if missing:
        raise InputError(f"{where}: efficiency is missing {', '.join(missing)}")
    e = {k: _number(eff[k], f"{where}: efficiency.{k}", sources)[0] for k in _EFFICIENCY}
    by_unit = eff.get("compute_by_unit") or {}
    if not isinstance(by_unit, dict):
        raise InputError(f"{where}: efficiency.compute_by_unit must map unit kinds to numbers")
    for kind in by_unit:
        if kind not in units:
            raise InputError(f"{where}: efficiency.compute_by_unit names {kind!r}, which is not under "
                             f"peak_tflops; {choices_hint(units)}")
    by_unit = {k: _number(v, f"{where}: efficiency.compute_by_unit.{k}", sources)[0] for k, v in by_unit.items()}
    for k, x in [(k, e[k]) for k in ("compute", "memory", "vector")] + [(f"compute_by_unit.{u}", x)
                                                                           for u, x in by_unit.items()]:
        if x > 1:
            raise InputError(f"{where}: efficiency.{k} is a fraction of peak and must be <= 1, got {x}")
    if val["idle_w"] > val["tdp_w"]:
        raise InputError(f"{where}: idle_w {val['idle_w']} exceeds tdp_w {val['tdp_w']}")
    pw = {k: _number(doc[k], f"{where}: {k}", sources)[0] for k in _POWER_SCALARS if k in doc}
    threads = _number(doc["max_threads_per_sm"], f"{where}: max_threads_per_sm", sources)[0] \
        if "max_threads_per_sm" in doc else DEFAULT_THREADS_PER_SM
    int32 = _number(doc["int32_tops"], f"{where}: int32_tops", sources)[0] * 1e12 if "int32_tops" in doc else None
    if pw.get("boost_clock_mhz", math.inf) < pw.get("peak_clock_mhz", 0):
        raise InputError(f"{where}: boost_clock_mhz {pw['boost_clock_mhz']} is below peak_clock_mhz {pw['peak_clock_mhz']}")
    if "power_cap_w" in pw and pw["power_cap_w"] <= pw.get("static_w", val["idle_w"]):
        raise InputError(f"{where}: power_cap_w {pw['power_cap_w']} W is not above the device's static power "
                         f"{pw.get('static_w', val['idle_w'])} W: nothing could run")
    mem_type = _memory_type(doc, where, sources)
    spec = DeviceSpec(
        name=str(doc["name"]), description=str(doc.get("description", "")),
        memory_bytes=val["memory_capacity_gb"] * 1e9, bandwidth=val["memory_bandwidth_tbs"] * 1e12,
        l2_bytes=val["l2_cache_mb"] * 1e6, compute_units=int(val["compute_units"]), units=units,
        tdp_w=val["tdp_w"], idle_w=val["idle_w"], launch_s=val["launch_overhead_us"] * 1e-6,
        launch_eager_s=val["launch_overhead_eager_us"] * 1e-6, eff_compute=e["compute"], eff_compute_by_unit=by_unit,
        eff_m_min=e["compute_m_min"], eff_memory=e["memory"], eff_vector=e["vector"],
        sources=dict(sources), path=where, architecture=_architecture(doc, where),
        node_nm=pw.get("process_node_nm"), memory_type=mem_type,
        peak_clock_hz=pw["peak_clock_mhz"] * 1e6 if "peak_clock_mhz" in pw else None,
        boost_clock_hz=pw["boost_clock_mhz"] * 1e6 if "boost_clock_mhz" in pw else None,
        static_w=pw.get("static_w"), power_cap_w=pw.get("power_cap_w"), area=_area(doc, where),
        energy_basis=_energy_basis(doc, where), interconnect=_interconnect(doc, where, sources),
        max_threads_per_sm=int(threads), int32_ops=int32)
    unknown = set(doc) - set(_TOP_LEVEL)
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; valid: {', '.join(_TOP_LEVEL)}")
    unknown = set(eff) - {*_EFFICIENCY, "compute_by_unit"}
    if unknown:
        raise InputError(f"{where}: efficiency has unknown key(s) {', '.join(sorted(unknown))}; "
                         f"valid: {', '.join(_EFFICIENCY)}, compute_by_unit")
    # read-only mappings: a loaded device is shared (memoised), so it must not be edited in place
    object.__setattr__(spec, "units", FrozenDict(units))
    object.__setattr__(spec, "eff_compute_by_unit", FrozenDict(by_unit))
    object.__setattr__(spec, "sources", FrozenDict(sources))
    spec.high_unit  # noqa: B018  (validates that an up-cast unit exists)
    return spec


def _architecture(doc: dict, where: str) -> str:
    from hwmodels.kernels import ARCHITECTURES

    a = doc.get("architecture", "generic")
    if a not in ARCHITECTURES:
        raise InputError(f"{where}: unknown architecture {a!r}; {choices_hint(ARCHITECTURES)}")
    return str(a)


def _memory_type(doc: dict, where: str, sources: dict) -> str | None:
    from hwmodels.power import MEMORY_TYPES

    e = doc.get("memory_type")
    if e is None:
        return None
    if not isinstance(e, dict) or "value" not in e or not e.get("source"):
        raise InputError(f"{where}: memory_type: expected a mapping with 'value' and 'source', got {e!r}")
    if e["source"] not in sources:
        raise InputError(f"{where}: memory_type: source {e['source']!r} is not listed under 'sources'")
    if e["value"] not in MEMORY_TYPES:
        raise InputError(f"{where}: unknown memory_type {e['value']!r}; {choices_hint(MEMORY_TYPES)}")
    return str(e["value"])


def _interconnect(doc: dict, where: str, sources: dict) -> Interconnect:
    """``interconnect: {scale_up: {link, gbs, topology, domain, sharp, source}, scale_out: {...}, host: {...}}``."""
    from hwmodels.links import LINK_KINDS, TOPOLOGIES

    ic = doc.get("interconnect")
    if ic is None:
        return Interconnect()
    if not isinstance(ic, dict):
        raise InputError(f"{where}: interconnect must be a mapping of scale_up, scale_out, host")
    bad = set(ic) - {"scale_up", "scale_out", "host"}
    if bad:
        raise InputError(f"{where}: interconnect has unknown level(s) {', '.join(sorted(bad))}; valid: scale_up, scale_out, host")
    out = {}
    for level, e in ic.items():
        w = f"{where}: interconnect.{level}"
        valid = ("link", "gbs", "source", "note") + (("topology", "domain", "sharp") if level == "scale_up" else
                                                      ("nics",) if level == "scale_out" else ())
        if not isinstance(e, dict):
            raise InputError(f"{w}: expected a mapping with {', '.join(valid)}")
        bad = set(e) - set(valid)
        if bad:
            raise InputError(f"{w}: unknown key(s) {', '.join(sorted(bad))}; valid: {', '.join(valid)}")
        if e.get("link") not in LINK_KINDS:
            raise InputError(f"{w}: unknown link {e.get('link')!r}; {choices_hint(LINK_KINDS)}")
        gbs, src = _number(dict(value=e.get("gbs"), source=e.get("source")), f"{w}.gbs", sources)
        topo = e.get("topology", "switch")
        if topo not in TOPOLOGIES:
            raise InputError(f"{w}: unknown topology {topo!r}; {choices_hint(TOPOLOGIES)}")
        domain = e.get("domain", 1)
        if isinstance(domain, bool) or not isinstance(domain, int) or domain < 1:
            raise InputError(f"{w}: domain must be a whole number of GPUs >= 1, got {domain!r}")
        if not isinstance(e.get("sharp", False), bool):
            raise InputError(f"{w}: sharp must be true or false")
        nics = e.get("nics", 0)
        if isinstance(nics, bool) or not isinstance(nics, int) or nics < 0:
            raise InputError(f"{w}: nics must be a whole number >= 0 (0: one per GPU), got {nics!r}")
        out[level] = Link(e["link"], gbs * 1e9, topo, domain, bool(e.get("sharp", False)), src, nics)
    return Interconnect(**out)


def _energy_basis(doc: dict, where: str) -> str:
    b = doc.get("energy_basis", "tdp")
    if b not in ("tdp", "node"):
        raise InputError(f"{where}: energy_basis must be 'tdp' (energies from the TDP: a product) or 'node' "
                         f"(from the process node: a design), got {b!r}")
    return b


def _area(doc: dict, where: str) -> dict:
    """``area_mm2`` (a generated device's breakdown: part -> mm2), read-only."""
    a = doc.get("area_mm2") or {}
    if not isinstance(a, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in a.values()):
        raise InputError(f"{where}: area_mm2 must map parts to non-negative numbers")
    return FrozenDict({str(k): float(v) for k, v in a.items()})


_TOP_LEVEL = ("name", "architecture", "description", "sources", *_SCALARS, "peak_tflops", "efficiency",
              *_POWER_SCALARS, *_OPTIONAL_SCALARS, "memory_type", "area_mm2", "generated_from", "energy_basis", "interconnect")


def override_keys() -> list[str]:
    """Every number ``--set KEY=NUMBER`` may set (``peak_tflops.KIND`` may add a unit the device lacks)."""
    return ([*_SCALARS, *_POWER_SCALARS, *_OPTIONAL_SCALARS] + [f"peak_tflops.{k}" for k in UNIT_ACCEPTS] + [f"efficiency.{k}" for k in _EFFICIENCY]
            + [f"efficiency.compute_by_unit.{k}" for k in UNIT_ACCEPTS])


def _apply_overrides(doc: dict, overrides: dict, where: str) -> dict:
    """``{"peak_tflops.mxfp4": 4000, "memory_bandwidth_tbs": 4}`` -> a copy of ``doc`` with those values.

    Keys must be numbers of the schema (:func:`override_keys`): a misspelt key is an error, not a
    no-op. Overridden numbers get the source ``override`` (added to ``sources``): a what-if is not
    a fact; the new value is validated like any other (finite, in range).
    """
    if not overrides:
        return doc
    valid = override_keys()
    for path in overrides:
        if path not in valid:
            close = [k for k in valid if k.split(".")[-1] == path.split(".")[-1]] or valid
            raise InputError(f"--set {path}: not a device number; valid keys: {', '.join(close[:12])}"
                             f"{', ...' if len(close) > 12 else ''}")
    doc = copy.deepcopy(doc)
    if not isinstance(doc.get("sources"), dict):
        doc["sources"] = {}
    doc["sources"]["override"] = "value set by the user for a what-if study"
    for path, value in overrides.items():
        keys = path.split(".")
        node = doc
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise InputError(f"{where}: cannot override {path!r}")
        old = node.get(keys[-1])
        extra = {k: v for k, v in old.items() if k == "accepts"} if isinstance(old, dict) else {}
        node[keys[-1]] = {"value": value, "source": "override", **extra}
    return doc


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def split_variant(name: str) -> tuple[str, dict]:
    """``custom-mx[sram_mb=32,memory.stacks=6]`` -> (``custom-mx``, {``sram_mb``: 32, ...}): a generated
    design with some of its design-file numbers changed (dotted keys reach into mappings)."""
    import re

    m = re.fullmatch(r"\s*(.+?)\[(.*)\]\s*", name)
    if not m:
        return name, {}
    sets = {}
    for item in filter(None, (x.strip() for x in m.group(2).split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise InputError(f"device {name!r}: design changes are KEY=NUMBER, comma-separated, got {item!r}")
        try:
            num = float(v)
        except ValueError:
            raise InputError(f"device {name!r}: {k.strip()} must be a number, got {v!r}") from None
        sets[k.strip()] = int(num) if num.is_integer() else num
    return m.group(1), sets


def vary_design(doc: dict, sets: dict, where: str) -> dict:
    import copy

    from hwmodels.generator import DESIGN_KEYS, is_design

    if not is_design(doc):
        raise InputError(f"{where}: [KEY=NUMBER] changes apply to accelerator designs (files with 'accelerator:'), "
                         "not to a device file; use --set for those")
    doc = copy.deepcopy(doc)
    for key, v in sets.items():
        parts = key.split(".")
        if parts[0] not in DESIGN_KEYS:
            raise InputError(f"{where}: unknown design key {parts[0]!r}; valid: {', '.join(DESIGN_KEYS)}")
        node = doc
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = v
    doc["accelerator"] = f"{doc['accelerator']}[" + ",".join(f"{k}={v:g}" for k, v in sets.items()) + "]"
    return doc


def load_device(name_or_path: str, overrides: dict | None = None) -> DeviceSpec:
    """A bundled device by name (``h100-sxm``) or a path to a device YAML file; a generated design
    may carry changes to its design numbers, ``custom-mx[sram_mb=32,memory.stacks=6]``.

    Memoised on the file's *content* and the overrides: loading again is free, and an edited file
    is read afresh. The returned spec is immutable (frozen, read-only mappings).
    """
    key, variant = split_variant(str(name_or_path).strip())
    key = key.strip()
    if key.lower() in _bundled():
        where, text = f"device {key.lower()}", _bundled()[key.lower()].read_text()
    elif key.endswith((".yaml", ".yml")) or Path(key).is_file():
        where = key
        try:
            text = Path(key).read_text()
        except OSError as e:
            raise InputError(f"cannot read device file {key}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"device file {key} is not UTF-8 text") from None
    else:
        raise InputError(f"unknown device {key!r}; {choices_hint(_bundled())} (or a path to a YAML file)")
    over = tuple(sorted((overrides or {}).items()))
    return _load(where, text, json.dumps(over), json.dumps(variant, sort_keys=True))


@lru_cache(maxsize=1024)
def _load(where: str, text: str, overrides_json: str, variant_json: str = "{}") -> DeviceSpec:
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise InputError(f"malformed YAML in {where}: {msg}") from None
    from hwmodels.generator import generate, is_design

    variant = json.loads(variant_json)
    if variant:
        doc = vary_design(doc, variant, where)

    if is_design(doc):  # an accelerator design: generate its device document
        doc = generate(doc, where)
    return parse_device(doc, where, dict(json.loads(overrides_json)))
