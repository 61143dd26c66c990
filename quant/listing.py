"""Tables about formats and tensors for the command line (``mpqsim formats``, ``quantize-stats``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mpqsim import InputError
from quant.formats import parse_format
from quant.metrics import sqnr
from quant.quantize import quantize

#: One representative per family and element type (the grammar takes any block/group size).
REPRESENTATIVES = (
    "fp32", "bf16", "fp16",
    "mxint8_32", "mxint6_32", "mxint4_32", "mxint3_32", "mxint2_32",
    "mxfp8_e4m3_32", "mxfp8_e5m2_32", "mxfp6_e3m2_32", "mxfp6_e2m3_32", "mxfp4_e2m1_32",
    "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1_chan", "fp4_e2m1_g32",
    "int8_chan", "int8_tens", "int4_g128", "int4_g128_asym", "int4_chan_mse", "int3_g32", "int4_tens",
    "nf4_64", "nf3_64", "dyn8_64", "dyn4_64",
)
DEFAULT_STATS_FORMATS = ("mxint8_32", "mxint4_32", "mxfp8_e4m3_32", "mxfp4_e2m1_32", "int8_chan", "int4_g128",
                         "nf4_64")


def formats_table(names=REPRESENTATIVES) -> pd.DataFrame:
    """Family, element, scale, bits/element (scale included), range and native unit keys."""
    rows = []
    for name in names:
        f = parse_format(name)
        if f.family == "float":
            element = name
        elif f.is_float_element:
            element = f"e{f.ebits}m{f.mbits}"
        elif f.is_codebook:
            element = f"{f.element_bits}-bit codebook"
        else:
            element = f"int{f.element_bits}" + (" (asym)" if f.asymmetric else "")
        per = {"block": f"per {f.block}", "group": f"per {f.block}", "channel": "per channel",
               "tensor": "per tensor", "none": ""}[f.granularity]
        scale = f"{f.scale_type} {per}".strip() if f.scale_type != "none" else "-"
        if f.mse:
            scale += " (MSE)"
        top = f.max_normal if f.name != "fp32" else float(np.finfo(np.float32).max)
        low = f.min_subnormal if f.name != "fp32" else float(np.finfo(np.float32).smallest_subnormal)
        rows.append(dict(format=name, family=f.family, element=element, scale=scale,
                         bits_per_element=f.bits_per_element, max_normal=top, min_subnormal=low,
                         range_db=20 * math.log10(top / low), native_units=" ".join(f.unit_keys) or "-"))
    return pd.DataFrame(rows)


def _load_tensors(path: Path):
    """Yield (name, float32 ndarray) from a .npy, a .safetensors file or a model directory."""
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise InputError(f"no *.safetensors weight files in {path}")
        for f in files:
            yield from _load_tensors(f)
        return
    if not path.exists():
        raise InputError(f"tensor file not found: {path}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise InputError(f"cannot read {path} as .npy: {e}") from None
        yield path.stem, arr
        return
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
        except ImportError:
            raise InputError("reading .safetensors needs the 'safetensors' package (pip install -e '.[quant]')") from None
        try:
            import torch  # noqa: F401  (bf16 tensors need torch to load)

            fw = "pt"
        except ImportError:
            fw = "numpy"
        try:
            with safe_open(str(path), framework=fw) as fh:
                for key in fh.keys():
                    t = fh.get_tensor(key)
                    yield key, (t.float().numpy() if fw == "pt" else np.asarray(t, dtype=np.float32))
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise InputError(f"cannot read {path} as safetensors: {str(e).splitlines()[0]}") from None
        return
    raise InputError(f"unsupported tensor file {path.name}: give a .npy, a .safetensors or a model directory")


def quantize_stats(path, formats=DEFAULT_STATS_FORMATS, axis: int = -1, rounding: str = "even",
                   min_dims: int = 2, progress=None) -> pd.DataFrame:
    """SQNR (dB) of every tensor (with >= ``min_dims`` dimensions) in every format, plus an
    ``(all)`` row pooling the errors of all tensors. Elements whose input or quantized value is not
    finite are left out of both (``nonfinite`` counts the non-finite inputs). ``progress(i, name)``
    is called per tensor."""
    fmts = [parse_format(f) for f in formats]
    rows, signal, noise = [], {f.name: 0.0 for f in fmts}, {f.name: 0.0 for f in fmts}
    for i, (name, arr) in enumerate(_load_tensors(Path(path))):
        if arr.ndim < min_dims or not np.issubdtype(arr.dtype, np.floating):
            continue
        if progress:
            progress(i, name)
        x = arr.astype(np.float32, copy=False)
        x64 = x.astype(np.float64)
        finite = np.isfinite(x64)
        row = dict(tensor=name, shape="x".join(map(str, arr.shape)), nonfinite=int(finite.size - finite.sum()))
        for f in fmts:
            q = np.asarray(quantize(x, f, axis=axis, rounding=rounding), dtype=np.float64)
            # SQNR over elements whose input and output are finite (a NaN input spoils its whole MX
            # block); non-finite inputs are counted in `nonfinite`, and nothing non-finite is pooled
            ok = finite & np.isfinite(q)
            xf, qf = x64[ok], q[ok]
            row[f.name] = sqnr(xf, qf)
            signal[f.name] += float(np.sum(xf**2))
            noise[f.name] += float(np.sum((xf - qf) ** 2))
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no floating-point tensor with {min_dims}+ dimensions")
    total = dict(tensor="(all)", shape="", nonfinite=sum(r["nonfinite"] for r in rows))
    for f in fmts:
        sig, noi = signal[f.name], noise[f.name]
        total[f.name] = (10 * math.log10(sig / noi) if sig > 0 else -math.inf) if noi > 0 else \
            (math.inf if math.isfinite(noi) else math.nan)
    return pd.DataFrame(rows + [total])


def stderr_progress(i: int, name: str) -> None:
    print(f"\r[{i + 1}] {name[:70]:70s}", end="", file=sys.stderr, flush=True)

