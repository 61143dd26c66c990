"""The format grammar of docs/DESIGN.md: one parser for every number format mpqsim knows.

A format string names the element type and how it is scaled::

    bf16 fp16 fp32                      high precision, round-to-nearest-even casts
    mxint{k}_{block}                    OCP MX integer, k = 2..8, shared E8M0 scale per block
    mxfp{b}_e{E}m{M}_{block}            OCP MX float (e4m3, e5m2, e3m2, e2m3, e2m1), b = 1 + E + M
    fp{b}_e{E}m{M}[_tens|_chan|_g{G}]   scaled float ExMy (per tensor by default)
    int{k}_tens | int{k}_chan | int{k}_g{G}   [+ _asym]   scaled integer, k = 2..8
    nf{k}_{block}                       quantile (NormalFloat-like) codebook, block-wise absmax
    dyn{k}_{block}                      dynamic-exponent codebook, block-wise absmax

Each :class:`Format` knows its bits per element *including* scale overhead (``mxint4_32`` =
4 + 8/32 = 4.25; ``nf4_64`` with a 16-bit absmax = 4.25 as in seed 004) and which compute-unit
kinds could consume it exactly (``unit_keys``), which the cost model uses to decide whether an
op runs natively or is up-cast. Per-tensor and per-channel scales are counted as 0 bits per
element (one scale per tensor or per output row amortises to < 0.01 bit for LLM-sized rows).

This module holds the grammar and the bit accounting; quantize-dequantize lives beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mpqsim import InputError

#: (ebits, mbits) of the float element types the MX spec and the papers use.
FLOAT_ELEMENTS = {(4, 3): "e4m3", (5, 2): "e5m2", (3, 2): "e3m2", (2, 3): "e2m3", (2, 1): "e2m1"}

#: bits of one scale: E8M0 for MX, fp16 for group/block scales of the other families.
MX_SCALE_BITS = 8
GROUP_SCALE_BITS = 16

GRAMMAR_HELP = (
    "format grammar: bf16 | fp16 | fp32 | mxint{k}_{block} (k=2..8) | mxfp{b}_e{E}m{M}_{block} "
    "(e4m3, e5m2, e3m2, e2m3, e2m1) | fp{b}_e{E}m{M}[_tens|_chan|_g{G}][_mse] | "
    "int{k}_tens|_chan|_g{G}[_asym][_mse] "
    "| nf{k}_{block} | dyn{k}_{block} | nvfp4 (e2m1, block 16, e4m3 scales, fp32 tensor scale); examples: bf16, mxint4_32, mxfp4_e2m1_32, mxfp8_e4m3_32, "
    "fp8_e4m3, fp4_e2m1, int4_g128, int8_chan, int4_tens, nf4_64"
)


@dataclass(frozen=True)
class Format:
    """One number format, parsed from its string.

    Attributes:
        name: canonical format string (``mxint4_32``).
        family: ``float`` (bf16/fp16/fp32), ``mxint``, ``mxfp``, ``fp``, ``int``, ``nf``, ``dyn``.
        element_bits: bits of one element, sign included.
        ebits, mbits: exponent/mantissa bits for float elements (0 for integer/codebook).
        granularity: ``none`` (no scale), ``block`` (MX / codebooks), ``group``, ``channel``, ``tensor``.
        block: elements sharing one scale for ``block``/``group`` granularity, else 0.
        scale_bits: bits of one scale (8 for MX E8M0, 16 otherwise; 0 when unscaled).
        asymmetric: integer formats with a zero point (stored in ``element_bits`` bits per group).
        mse: the scale is calibrated by minimising the squared error over clipping ratios
            (:data:`MSE_CLIP_RATIOS`) instead of taken from the absolute maximum.
    """

    name: str
    family: str
    element_bits: int
    ebits: int = 0
    mbits: int = 0
    granularity: str = "none"
    block: int = 0
    scale_bits: int = 0
    asymmetric: bool = False
    mse: bool = False

    @property
    def bits_per_element(self) -> float:
        """Storage bits per element including the amortised scale (and zero point)."""
        if self.granularity in ("block", "group"):
            extra = self.scale_bits + (self.element_bits if self.asymmetric else 0)
            return self.element_bits + extra / self.block
        return float(self.element_bits)

    @property
    def bytes_per_element(self) -> float:
        return self.bits_per_element / 8.0

    @property
    def is_high_precision(self) -> bool:
        """bf16/fp16/fp32: the unquantized side of a mixed-precision map."""
        return self.family == "float"

    @property
    def unit_keys(self) -> tuple[str, ...]:
        """Compute-unit input types that hold this format's values exactly, narrowest first.

        A device unit runs an op natively when it accepts a key of the weight format and a key
        of the activation format (see ``sim.precision``). Group-scaled and codebook formats have
        none: their scales vary along the reduction axis, so they are dequantized first.
        """
        return _unit_keys(self)

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------ element semantics
    @property
    def scale_type(self) -> str:
        """``e8m0`` (MX power-of-two), ``fp16`` (group/block scales), ``fp32`` (tensor/channel), ``none``."""
        if self.family in ("mxint", "mxfp"):
            return "e8m0"
        if self.granularity in ("group", "block"):
            return "fp16"
        return "fp32" if self.granularity in ("tensor", "channel") else "none"

    @property
    def is_float_element(self) -> bool:
        return self.family in ("float", "mxfp", "fp", "nvfp")

    @property
    def is_codebook(self) -> bool:
        return self.family in ("nf", "dyn")

    @property
    def ieee(self) -> bool:
        """bf16/fp16/fp32: casts with IEEE overflow to Inf; every other format saturates."""
        return self.family == "float"

    @property
    def bias(self) -> int:
        return 2 ** (self.ebits - 1) - 1 if self.is_float_element else 0

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal element (float elements)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest normal element; 0 for MXINT (elements in [-2, 2))."""
        if not self.is_float_element:
            return 0
        if self.ieee or (self.ebits, self.mbits) == (5, 2):
            return 2 ** self.ebits - 2 - self.bias   # top exponent code holds Inf/NaN
        return 2 ** self.ebits - 1 - self.bias       # e4m3 (NaN only at S.1111.111), fp6, fp4

    @property
    def frac_bits(self) -> int:
        """Fraction bits of an integer element: k-2 for MXINT-k (1 sign, 1 integer bit), 0 for INT-k."""
        return self.element_bits - 2 if self.family == "mxint" else 0

    @property
    def qmax(self) -> int:
        """Largest integer code magnitude of a symmetric integer element (2^(k-1) - 1)."""
        return 2 ** (self.element_bits - 1) - 1

    @property
    def max_normal(self) -> float:
        """Largest element magnitude (before scaling)."""
        if self.is_float_element:
            top = 1.75 if (self.ebits, self.mbits) == (4, 3) else 2 - 2.0 ** -self.mbits
            return top * 2.0 ** self.emax
        if self.is_codebook:
            return 1.0
        if self.asymmetric:
            return float(2 ** self.element_bits - 1)
        return self.qmax * 2.0 ** -self.frac_bits

    @property
    def min_subnormal(self) -> float:
        """Smallest positive element magnitude (before scaling)."""
        if self.is_float_element:
            return 2.0 ** (self.emin - self.mbits)
        if self.is_codebook:
            g = self.grid
            return float(g[g > 0].min())
        return 2.0 ** -self.frac_bits

    @property
    def grid(self) -> np.ndarray:
        """Every representable element value (unscaled), sorted: the non-negative half for
        sign-magnitude elements mirrored, the whole codebook for nf/dyn, the codes for asymmetric INT."""
        return _grid(self)


MSE_CLIP_RATIOS = tuple(1.0 - 0.01 * i for i in range(51))  # absmax x 1.00, 0.99, ..., 0.50


@lru_cache(maxsize=None)
def _grid_cached(f: "Format") -> tuple:
    if f.is_codebook:
        return tuple(_codebook(f.family, f.element_bits))
    if f.family == "int" and f.asymmetric:
        return tuple(float(i) for i in range(2 ** f.element_bits))
    if f.is_float_element:
        if f.name == "fp32":
            raise ValueError("fp32's grid has 2^31 values; not enumerated")
        sub = [j * 2.0 ** (f.emin - f.mbits) for j in range(2 ** f.mbits)]
        normal = [(1 + j / 2 ** f.mbits) * 2.0 ** e for e in range(f.emin, f.emax + 1) for j in range(2 ** f.mbits)]
        pos = [v for v in sub + normal if v <= f.max_normal]
    else:
        pos = [j * 2.0 ** -f.frac_bits for j in range(f.qmax + 1)]
    return tuple(sorted(set(pos) | {-v for v in pos if v}))


def _grid(f: "Format") -> np.ndarray:
    return np.array(_grid_cached(f))


#: The published NF4 table (QLoRA, Dettmers et al. 2023; bitsandbytes csrc/kernels.cu ``nf4_data``
#: and functional.get_4bit_type("nf4")): the float32 values every NF4 kernel uses. Computing the
#: quantiles afresh in float64 differs from it in 10 of 16 values by up to 1.2e-7.
NF4_PUBLISHED = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0)


def _codebook(family: str, bits: int) -> list[float]:
    """Signed codebooks of seed 004 appendix A, normalised to [-1, 1].

    ``nf``: NormalFloat. NF4 is the published table (:data:`NF4_PUBLISHED`); other widths (no
    published table) follow QLoRA's construction: 2^(k-1) positive and 2^(k-1) - 1 negative normal
    quantiles at offset 0.9677083, plus 0. ``dyn``: dynamic-exponent (bitsandbytes' dynamic map,
    max_exponent_bits = k - 1): for each decade 10^(i-(k-2)), 2^i linearly spaced fraction means.
    """
    from statistics import NormalDist

    if family == "nf" and bits == 4:
        return list(NF4_PUBLISHED)
    if family == "nf":
        offset = 0.9677083
        ppf = NormalDist().inv_cdf
        n_pos, n_neg = 2 ** (bits - 1), 2 ** (bits - 1) - 1
        pos = [ppf(offset - (offset - 0.5) * i / n_pos) for i in range(n_pos)]
        neg = [-ppf(offset - (offset - 0.5) * i / n_neg) for i in range(n_neg)]
        vals = pos + neg + [0.0]
        top = max(abs(v) for v in vals)
        return sorted(v / top for v in vals)
    vals = [0.0, 1.0]
    for i in range(bits - 1):
        n = 2 ** i
        bounds = [0.1 + 0.9 * j / n for j in range(n + 1)]
        means = [(bounds[j] + bounds[j + 1]) / 2 for j in range(n)]
        decade = 10.0 ** (i - (bits - 2))
        vals += [decade * m for m in means] + [-decade * m for m in means]
    return sorted(vals)


def _unit_keys(f: Format) -> tuple[str, ...]:
    if f.family == "float":
        return {"fp32": ("fp32",), "bf16": ("bf16", "fp32"), "fp16": ("fp16", "fp32")}[f.name]
    if f.granularity == "group" or f.family in ("nf", "dyn"):
        return ()
    if f.family == "int":
        return tuple(f"int{k}" for k in (4, 8) if k >= f.element_bits)
    if f.family == "fp":
        widths = {8: ("fp8",), 6: ("fp6", "fp8"), 4: ("fp4", "fp6", "fp8")}
        return widths.get(f.element_bits, ())
    if f.family == "mxint":
        return tuple(f"mxint{k}_{f.block}" for k in (4, 8) if k >= f.element_bits)
    if f.family == "mxfp":
        widths = {8: (8,), 6: (6, 8), 4: (4, 6, 8)}
        return tuple(f"mxfp{k}_{f.block}" for k in widths.get(f.element_bits, ()))
    if f.family == "nvfp":  # NVIDIA's block-scaled FP4 (Blackwell tcgen05 kind mxf4nvf4)
        return (f"nvfp4_{f.block}",)
    return ()


NVFP4_BLOCK = 16
_FLOAT_RE = re.compile(r"(bf16|fp16|fp32)")
_MXINT_RE = re.compile(r"mxint(\d+)_(\d+)")
_MXFP_RE = re.compile(r"mxfp(\d+)_e(\d+)m(\d+)_(\d+)")
_FP_RE = re.compile(r"fp(\d+)_e(\d+)m(\d+)(?:_(tens|chan|g(\d+)))?(_mse)?")
_INT_RE = re.compile(r"int(\d+)_(tens|chan|g(\d+))(_asym)?(_mse)?")
_CODEBOOK_RE = re.compile(r"(nf|dyn)(\d+)_(\d+)")


def _check_bits(bits: int, lo: int, hi: int, s: str) -> None:
    if not lo <= bits <= hi:
        raise InputError(f"format {s!r}: element bits {bits} out of range {lo}..{hi}")


def _check_block(block: int, s: str) -> None:
    if block <= 0:
        raise InputError(f"format {s!r}: block/group size must be > 0, got {block}")


def _float_elem(bits: int, e: int, m: int, s: str) -> None:
    if 1 + e + m != bits:
        raise InputError(f"format {s!r}: e{e}m{m} has {1 + e + m} bits, not {bits}")
    if (e, m) not in FLOAT_ELEMENTS:
        raise InputError(f"format {s!r}: unknown float element e{e}m{m}; valid: "
                         + ", ".join(sorted(FLOAT_ELEMENTS.values())))


@lru_cache(maxsize=None)
def parse_format(spec: str | Format) -> Format:
    """Parse a format string (or pass a :class:`Format` through). Raises :class:`InputError`."""
    if isinstance(spec, Format):
        return spec
    if not isinstance(spec, str):
        raise InputError(f"format must be a string, got {type(spec).__name__}; {GRAMMAR_HELP}")
    s = spec.strip().lower()
    if m := _FLOAT_RE.fullmatch(s):
        bits = {"bf16": (16, 8, 7), "fp16": (16, 5, 10), "fp32": (32, 8, 23)}[s]
        return Format(s, "float", bits[0], bits[1], bits[2])
    if m := _MXINT_RE.fullmatch(s):
        k, block = int(m[1]), int(m[2])
        _check_bits(k, 2, 8, s)
        _check_block(block, s)
        return Format(s, "mxint", k, granularity="block", block=block, scale_bits=MX_SCALE_BITS)
    if m := _MXFP_RE.fullmatch(s):
        b, e, mm, block = (int(x) for x in m.groups())
        _float_elem(b, e, mm, s)
        _check_block(block, s)
        return Format(s, "mxfp", b, e, mm, "block", block, MX_SCALE_BITS)
    if m := _FP_RE.fullmatch(s):
        b, e, mm = int(m[1]), int(m[2]), int(m[3])
        _float_elem(b, e, mm, s)
        gran, group = _granularity(m[4], m[5], s)
        name = f"fp{b}_e{e}m{mm}" + ("" if gran == "tensor" and not m[4] else f"_{m[4]}") + (m[6] or "")
        return Format(name, "fp", b, e, mm, gran, group, GROUP_SCALE_BITS if gran == "group" else 0,
                      mse=bool(m[6]))
    if m := _INT_RE.fullmatch(s):
        k = int(m[1])
        _check_bits(k, 2, 8, s)
        gran, group = _granularity(m[2], m[3], s)
        return Format(s, "int", k, granularity=gran, block=group,
                      scale_bits=GROUP_SCALE_BITS if gran == "group" else 0, asymmetric=bool(m[4]),
                      mse=bool(m[5]))
    if s == "nvfp4":  # e2m1 elements, one e4m3 scale per 16, one fp32 scale per tensor (4.5 bits)
        return Format("nvfp4", "nvfp", 4, 2, 1, "block", NVFP4_BLOCK, 8)
    if m := _CODEBOOK_RE.fullmatch(s):
        k, block = int(m[2]), int(m[3])
        _check_bits(k, 2, 8, s)
        _check_block(block, s)
        return Format(s, m[1], k, granularity="block", block=block, scale_bits=GROUP_SCALE_BITS)
    raise InputError(f"unknown format {spec!r}; {GRAMMAR_HELP}")


def _granularity(tag: str | None, group: str | None, s: str) -> tuple[str, int]:
    if tag is None or tag == "tens":
        return "tensor", 0
    if tag == "chan":
        return "channel", 0
    g = int(group)
    _check_block(g, s)
    return "group", g
