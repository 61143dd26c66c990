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

import hashlib
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
