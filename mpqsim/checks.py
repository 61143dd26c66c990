"""Input checks shared by every package: numbers, integers, choices and paths, one clear line each.

Every library entry point that takes user input checks it with these before any work starts and
raises :class:`mpqsim.InputError` (never ``TypeError`` / ``ValueError``); the CLI prints the line
and exits with status 2.
"""

from __future__ import annotations

import math
import os
from numbers import Integral, Real
from pathlib import Path

from mpqsim import InputError


def number(value, what: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False) -> float:
    """``value`` as a finite float within [lo, hi] (open ends where asked)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InputError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise InputError(f"{what} must be {'>' if lo_open else '>='} {lo:g}, got {value!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise InputError(f"{what} must be {'<' if hi_open else '<='} {hi:g}, got {value!r}")
    return v


def integer(value, what: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int within [lo, hi] (a float with an integral value is accepted)."""
    if isinstance(value, bool):
        raise InputError(f"{what} must be an integer, got {value!r}")
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not math.isfinite(value) or value != int(value):
            raise InputError(f"{what} must be an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, Integral):
        raise InputError(f"{what} must be an integer, got {value!r}")
    v = int(value)
    if lo is not None and v < lo:
        raise InputError(f"{what} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise InputError(f"{what} must be <= {hi}, got {v}")
    return v


def choice(value, what: str, valid) -> str:
    if value not in valid:
        raise InputError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")
    return value


def input_file(path, what: str) -> Path:
    """A readable regular file (not a directory)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what} {p} is not readable")
    return p


def output_file(path, what: str) -> Path | None:
    """A path a file can be written to (checked before the work that produces it); None passes."""
    if path is None or path == "":
        return None
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory; give a file name")
    parent = _existing_parent(p)
    if not parent.is_dir():
        raise InputError(f"{what} {p}: {parent} is not a directory")
    if p.exists() and not os.access(p, os.W_OK) or not p.exists() and not os.access(parent, os.W_OK):
        raise InputError(f"{what} {p} is not writable")
    return p


def output_dir(path, what: str) -> Path:
    """A directory that exists and is writable, or can be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} exists and is not a directory")
    parent = p if p.exists() else _existing_parent(p)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"{what} {p} is not writable")
    return p


def _existing_parent(p: Path) -> Path:
    q = p.absolute().parent
    while not q.exists() and q != q.parent:
        q = q.parent
    return q
