"""mpqsim: a hardware-aware simulator for mixed-precision LLM inference.

The product lives in the top-level packages ``workloads``, ``quant``, ``hwmodels``, ``sim`` and
``reports`` (see docs/DESIGN.md); this package holds what they share: the version and the error type
that the command line turns into one clear line and exit code 2.
"""

from functools import lru_cache
from importlib import resources

__version__ = "0.1.0"


class InputError(ValueError):
    """Bad user input (unknown name, malformed file, impossible shape).

    The message is one line that names the problem and, where there is a closed set, the valid
    choices. The CLI prints it as ``mpqsim: error: <message>`` and exits with status 2.
    """


def choices_hint(valid, limit: int = 40) -> str:
    """Format a list of valid choices for an error message (truncated past ``limit``)."""
    valid = sorted(valid)
    shown = ", ".join(valid[:limit])
    more = f", ... ({len(valid) - limit} more)" if len(valid) > limit else ""
    return f"valid choices: {shown}{more}"


class FrozenDict(dict):
    """A read-only dict (for specs that are memoised and shared); picklable, unlike a mappingproxy."""

    def _readonly(self, *args, **kwargs):
        raise TypeError("this mapping is read-only (a shared, memoised spec); build a new spec instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:  # immutable, so the hash is computed once
            h = self.__dict__["_hash"] = hash(tuple(sorted(self.items(), key=lambda kv: str(kv[0]))))
        return h


@lru_cache(maxsize=None)
def bundled_files(package: str, folder: str, suffix: str) -> dict:
    """Data files shipped in ``package/folder`` ending in ``suffix``: name (stem) -> resource."""
    d = resources.files(package) / folder
    return {p.name[: -len(suffix)]: p for p in d.iterdir() if p.name.endswith(suffix)}
