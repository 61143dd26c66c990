"""The format grammar of DESIGN.md: one parser for every number format mpqsim knows.

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

from mpqsim import InputError

#: (ebits, mbits) of the float element types the MX spec and the papers use.
FLOAT_ELEMENTS = {(4, 3): "e4m3", (5, 2): "e5m2", (3, 2): "e3m2", (2, 3): "e2m3", (2, 1): "e2m1"}

#: bits of one scale: E8M0 for MX, fp16 for group/block scales of the other families.
MX_SCALE_BITS = 8
GROUP_SCALE_BITS = 16

GRAMMAR_HELP = (
    "format grammar: bf16 | fp16 | fp32 | mxint{k}_{block} (k=2..8) | mxfp{b}_e{E}m{M}_{block} "
    "(e4m3, e5m2, e3m2, e2m3, e2m1) | fp{b}_e{E}m{M}[_tens|_chan|_g{G}] | int{k}_tens|_chan|_g{G}[_asym] "
    "| nf{k}_{block} | dyn{k}_{block}; examples: bf16, mxint4_32, mxfp4_e2m1_32, mxfp8_e4m3_32, "
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
    return ()


_FLOAT_RE = re.compile(r"(bf16|fp16|fp32)")
_MXINT_RE = re.compile(r"mxint(\d+)_(\d+)")
_MXFP_RE = re.compile(r"mxfp(\d+)_e(\d+)m(\d+)_(\d+)")
_FP_RE = re.compile(r"fp(\d+)_e(\d+)m(\d+)(?:_(tens|chan|g(\d+)))?")
_INT_RE = re.compile(r"int(\d+)_(tens|chan|g(\d+))(_asym)?")
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
        name = f"fp{b}_e{e}m{mm}" + ("" if gran == "tensor" and not m[4] else f"_{m[4]}")
        return Format(name, "fp", b, e, mm, gran, group, GROUP_SCALE_BITS if gran == "group" else 0)
    if m := _INT_RE.fullmatch(s):
        k = int(m[1])
        _check_bits(k, 2, 8, s)
        gran, group = _granularity(m[2], m[3], s)
        return Format(s, "int", k, granularity=gran, block=group,
                      scale_bits=GROUP_SCALE_BITS if gran == "group" else 0, asymmetric=bool(m[4]))
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
