"""A thin array shim so that one quantize-dequantize algorithm runs on NumPy arrays and torch
tensors alike (CPU or GPU), with the same float32 operations in the same order: that is what
makes the two agree bit for bit. Only what the algorithm needs is here.
"""

from __future__ import annotations

import numpy as np

from mpqsim import InputError


class NumpyOps:
    name = "numpy"
    float32 = np.float32
    int32 = np.int32

    @staticmethod
    def is_float(x) -> bool:
        return x.dtype in (np.float16, np.float32, np.float64)

    @staticmethod
    def to_f32(x):
        return np.asarray(x, dtype=np.float32)

    @staticmethod
    def restore(y, like):
        return y.astype(like.dtype, copy=False)

    moveaxis = staticmethod(np.moveaxis)
    abs = staticmethod(np.abs)
    floor = staticmethod(np.floor)
    rint = staticmethod(np.rint)           # round half to even
    where = staticmethod(np.where)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    isfinite = staticmethod(np.isfinite)
    copysign = staticmethod(np.copysign)

    @staticmethod
    def pad_last(x, n):
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n)]) if n else x

    @staticmethod
    def div(a, b):
        return a / np.float32(b) if np.isscalar(b) else a / b

    @staticmethod
    def amax(x, axis):
        return np.max(x, axis=axis, keepdims=True)

    @staticmethod
    def amin(x, axis):
        return np.min(x, axis=axis, keepdims=True)

    @staticmethod
    def sum(x, axis):
        return np.sum(x, axis=axis, keepdims=True, dtype=np.float32)

    @staticmethod
    def frexp_exp(a):
        """Exponent E with a = m * 2^E, m in [0.5, 1) (0 for a == 0), as int32."""
        return np.frexp(a)[1].astype(np.int32)

    @staticmethod
    def frexp(a):
        m, e = np.frexp(a)
        return m.astype(np.float32), e.astype(np.int32)

    @staticmethod
    def exp2i(e):
        """2^e as float32, exactly, for integer e in [-149, 127] (bit construction, no pow)."""
        e = np.asarray(e, dtype=np.int32)
        bits = np.where(e >= -126, (e + 127) << 23, np.left_shift(1, np.clip(e + 149, 0, 22)))
        return bits.astype(np.int32).view(np.float32)

    @staticmethod
    def clip_int(e, lo, hi):
        return np.clip(e, lo, hi)

    @staticmethod
    def asarray(values, like):
        return np.asarray(values, dtype=np.float32)

    @staticmethod
    def searchsorted(sorted_values, x):
        return np.searchsorted(sorted_values, x, side="left")

    @staticmethod
    def take(values, idx):
        return values[idx]

    @staticmethod
    def uniform(shape, rng, like):
        return rng.random(shape, dtype=np.float32)

    @staticmethod
    def make_rng(generator, like):
        if isinstance(generator, np.random.Generator):
            return generator
        return np.random.default_rng(0 if generator is None else generator)


class TorchOps:
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch
        self.float32 = torch.float32
        self.int32 = torch.int32

    def is_float(self, x) -> bool:
        return x.dtype in (self.torch.float16, self.torch.bfloat16, self.torch.float32, self.torch.float64)

    def to_f32(self, x):
        return x.detach().to(self.torch.float32)

    @staticmethod
    def restore(y, like):
        return y.to(like.dtype)

    def moveaxis(self, x, a, b):
        return self.torch.movedim(x, a, b)

    def abs(self, x):
        return self.torch.abs(x)

    def floor(self, x):
        return self.torch.floor(x)

    def rint(self, x):
        return self.torch.round(x)  # round half to even

    def where(self, c, a, b):
        t = self.torch
        a = a if isinstance(a, t.Tensor) else t.tensor(a, dtype=t.float32, device=c.device)
        b = b if isinstance(b, t.Tensor) else t.tensor(b, dtype=a.dtype, device=c.device)
        return t.where(c, a, b)

    def minimum(self, a, b):
        return self.torch.minimum(a, b if isinstance(b, self.torch.Tensor) else self.torch.tensor(b, dtype=a.dtype, device=a.device))

    def maximum(self, a, b):
        return self.torch.maximum(a, b if isinstance(b, self.torch.Tensor) else self.torch.tensor(b, dtype=a.dtype, device=a.device))

    def isfinite(self, x):
        return self.torch.isfinite(x)

    def copysign(self, a, b):
        return self.torch.copysign(a, b)

    def pad_last(self, x, n):
        return self.torch.nn.functional.pad(x, (0, n)) if n else x

    def div(self, a, b):
        """Correctly rounded a / b: CUDA divides by a Python scalar as a * (1/b), which is not."""
        if not isinstance(b, self.torch.Tensor):
            b = self.torch.full_like(a, b)
        return a / b

    def amax(self, x, axis):
        return self.torch.amax(x, dim=axis, keepdim=True)

    def amin(self, x, axis):
        return self.torch.amin(x, dim=axis, keepdim=True)

    def sum(self, x, axis):
        return self.torch.sum(x, dim=axis, keepdim=True, dtype=self.torch.float32)

    def frexp_exp(self, a):
        return self.torch.frexp(a)[1].to(self.torch.int32)

    def frexp(self, a):
        m, e = self.torch.frexp(a)
        return m, e.to(self.torch.int32)

    def exp2i(self, e):
        t = self.torch
        e = e.to(t.int32)
        bits = t.where(e >= -126, (e + 127) << 23, t.ones_like(e) << t.clamp(e + 149, 0, 22))
        return bits.view(t.float32)

    def clip_int(self, e, lo, hi):
        return self.torch.clamp(e, lo, hi)

    def asarray(self, values, like):
        return self.torch.as_tensor(np.asarray(values, dtype=np.float32), device=like.device)

    def searchsorted(self, sorted_values, x):
        return self.torch.searchsorted(sorted_values, x.contiguous(), side="left")

    @staticmethod
    def take(values, idx):
        return values[idx]

    def uniform(self, shape, rng, like):
        return self.torch.rand(shape, generator=rng, device=like.device, dtype=self.torch.float32)

    def make_rng(self, generator, like):
        t = self.torch
        if isinstance(generator, t.Generator):
            return generator
        g = t.Generator(device=like.device)
        g.manual_seed(0 if generator is None else int(generator))
        return g


_TORCH_OPS = None


def ops_for(x):
    """The shim for ``x`` (a NumPy array or a torch tensor); :class:`InputError` otherwise."""
    global _TORCH_OPS
    if isinstance(x, np.ndarray):
        ops = NumpyOps
    elif type(x).__module__.startswith("torch"):
        if _TORCH_OPS is None:
            _TORCH_OPS = TorchOps()
        ops = _TORCH_OPS
    else:
        raise InputError(f"quantize takes a NumPy array or a torch tensor, got {type(x).__name__}")
    if not ops.is_float(x):
        raise InputError(f"quantize needs a floating-point tensor (float16/bfloat16/float32/float64), "
                         f"got dtype {x.dtype}")
    return ops
