"""Compiled kernels whose on-disk cache can never serve stale code.

Numba's ``cache=True`` keys a cached kernel on its own file's timestamp and bytecode only. The
cost-model kernels inline functions from other modules (``workloads.optable.op_counts``, the
per-op cost function), so an edit there used to leave the cached kernel computing the old
formula. :func:`kernel` compiles with numba's file cache but adds to its key a hash of the source
of every module in the ``workloads`` and ``sim`` packages that uses Numba: any edit to any of them
compiles afresh. Where this numba lacks the cache class used here, kernels compile without a file
cache (always correct, slower to start).
"""

from __future__ import annotations

import collections
import hashlib
import types
from importlib.util import find_spec
from pathlib import Path

import numba

#: Packages whose Numba-using modules key the kernel cache.
KERNEL_PACKAGES = ("workloads", "sim")


def kernel_sources() -> list[Path]:
    """The source files whose content keys the kernel cache (every module of
    :data:`KERNEL_PACKAGES` that mentions numba), sorted."""
    files = []
    for pkg in KERNEL_PACKAGES:
        spec = find_spec(pkg)
        for d in spec.submodule_search_locations or ():
            files += [p for p in Path(d).glob("*.py") if "numba" in p.read_text(encoding="utf-8")]
    return sorted(files)


def sources_hash() -> str:
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


SOURCES_HASH = sources_hash()

try:
    from numba.core.caching import FunctionCache

    class _SourceKeyedCache(FunctionCache):
        """Numba's file cache with :data:`SOURCES_HASH` in every index key."""

        def _index_key(self, sig, codegen):
            return (*super()._index_key(sig, codegen), SOURCES_HASH)
except ImportError:  # pragma: no cover - a numba without this class: compile per process
    _SourceKeyedCache = None


def kernel(fn=None, **options):
    """``numba.njit(**options)`` with the source-keyed file cache (see the module doc)."""
    if fn is None:
        return lambda f: kernel(f, **options)
    options.pop("cache", None)
    disp = numba.njit(**options)(fn)
    if _SourceKeyedCache is not None:
        try:
            disp._cache = _SourceKeyedCache(disp.py_func)
        except Exception:  # pragma: no cover - e.g. no writable cache location: no file cache
            pass
    return disp


def interpreted(disp):
    """The same kernel run by the Python interpreter: ``disp.py_func`` with every Numba function it
    calls (recursively) replaced by its Python original. Same code, same IEEE arithmetic, so the
    same bits; used for tiny jobs in a process that has not yet loaded the compiled kernel (loading
    compiled code costs ~0.4 s once per process, more than a one-point question takes to answer)."""
    cached = _INTERPRETED.get(id(disp))
    if cached is not None and cached[0] is disp:
        return cached[1]
    fn = disp.py_func
    glb = dict(fn.__globals__)
    for name in fn.__code__.co_names:
        obj = glb.get(name)
        if isinstance(obj, numba.core.dispatcher.Dispatcher):
            glb[name] = interpreted(obj)
    out = types.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    _INTERPRETED[id(disp)] = (disp, out)
    return out


_INTERPRETED: dict = {}


def as_rows(*arrays):
    """Record arrays as the interpreter reads them: a 1-D array -> a list of namedtuples (attribute
    access by field name, like Numba's records; NumPy's own records shadow fields such as
    ``repeat`` or ``device`` with methods), a 2-D array -> a list of such lists."""
    out = []
    for a in arrays:
        row = _row_type(a.dtype)
        if a.ndim == 1:
            out.append([row(*r) for r in a.tolist()])
        else:
            out.append([[row(*r) for r in sub] for sub in a.tolist()])
    return out


_ROW_TYPES: dict = {}


def _row_type(dtype):
    if dtype not in _ROW_TYPES:
        _ROW_TYPES[dtype] = collections.namedtuple("Row", dtype.names, rename=False)
    return _ROW_TYPES[dtype]
