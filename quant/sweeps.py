"""Block-size and data-type sweeps (seed 004; the data of seed 000's Law 2): weight-only uniform
maps of one element type at many block sizes, evaluated on a real model.

For each (type, block) the linear layers' weights take the format (activations, attention, the
lm_head and the embeddings stay high), and the perplexity delta is measured. Types: ``int`` (a
scale per group), ``fp`` (e2m1 elements for 4 bits, a scale per group), ``nf`` (quantile
codebook), ``dyn`` (dynamic-exponent codebook), ``mxint`` / ``mxfp`` (power-of-two shared
scales); blocks: element counts, ``chan`` (one scale per output channel), ``tens`` (one per
tensor) where the family has them. Every finished point is appended to ``out/sweep.csv`` at once:
an interrupted sweep (even ``kill -9``) resumes with the points it lacks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mpqsim import InputError
from quant.formats import parse_format
from quant.precision import OpFormats, PrecisionMap

TYPES = ("int", "fp", "nf", "dyn", "mxint", "mxfp")


def format_for(kind: str, bits: int, block: str) -> str:
    """The format string of ``kind`` elements of ``bits`` at ``block`` (a number, ``chan`` or ``tens``)."""
    if kind not in TYPES:
        raise InputError(f"unknown data type {kind!r}; valid: {', '.join(TYPES)}")
    fp_elem = {4: "e2m1", 6: "e2m3", 8: "e4m3"}.get(bits)
    per = block in ("chan", "tens")
    if kind == "int":
        name = f"int{bits}_{block}" if per else f"int{bits}_g{block}"
    elif kind == "fp":
        if fp_elem is None:
            raise InputError(f"no fp element type of {bits} bits; valid: 4, 6, 8")
        name = f"fp{bits}_{fp_elem}_{block}" if per else f"fp{bits}_{fp_elem}_g{block}"
    elif per:
        raise InputError(f"{kind} formats have blocks only (not {block})")
    elif kind in ("nf", "dyn"):
        name = f"{kind}{bits}_{block}"
    elif kind == "mxint":
        name = f"mxint{bits}_{block}"
    else:
        if fp_elem is None:
            raise InputError(f"no MXFP element type of {bits} bits; valid: 4, 6, 8")
        name = f"mxfp{bits}_{fp_elem}_{block}"
    return parse_format(name).name


def grid(types, bits: int, blocks) -> tuple[list, list]:
    """([(type, block, format)], [skipped "type@block"]): the sweep's points; a per-channel or
    per-tensor block of a family that only has blocks (nf, dyn, MX) is skipped (and reported)."""
    points, skipped = [], []
    for t in types:
        for b in blocks:
            if str(b) in ("chan", "tens") and t in ("nf", "dyn", "mxint", "mxfp"):
                skipped.append(f"{t}@{b}")
                continue
            points.append((t, str(b), format_for(t, bits, str(b))))
    if not points:
        raise InputError("the sweep has no point to evaluate")
    return points, skipped


def weight_only_map(fmt: str) -> PrecisionMap:
    return PrecisionMap(name=f"w-{fmt}", roles={"linear": OpFormats.of(fmt, "bf16")})


def sweep_blocks(evaluator, types, bits: int, blocks, out_dir, progress=None) -> pd.DataFrame:
    """Evaluate every (type, block) not yet in ``out_dir/sweep.csv``; returns the whole table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.csv"
    done = pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    have = set(done.format) if len(done) else set()
    todo, _ = grid(types, bits, blocks)
    for i, (t, b, fmt) in enumerate(todo):
        if fmt in have:
            continue
        res = evaluator(weight_only_map(fmt))
        f = parse_format(fmt)
        row = pd.DataFrame([dict(type=t, bits=bits, block=str(b), format=fmt, bits_per_element=f.bits_per_element,
                                 block_elems=f.block if f.block else (0 if b == "tens" else -1), ppl=res["ppl"],
                                 ref_ppl=res["ref_ppl"], delta=res["delta"])])
        row.to_csv(path, mode="a", header=not path.is_file() or path.stat().st_size == 0, index=False)
        have.add(fmt)
        if progress:
            progress(i + 1, len(todo), fmt, res["delta"])
    return pd.read_csv(path)


__all__ = ["sweep_blocks", "format_for", "weight_only_map", "TYPES"]
