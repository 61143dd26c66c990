"""Our MXFP path against torchao's (OCP 'floor' scale mode) on ordinary data; skipped without torchao."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mx = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")

from quant import quantize  # noqa: E402

CASES = [(torch.float8_e4m3fn, "mxfp8_e4m3_32"), (torch.float8_e5m2, "mxfp8_e5m2_32"), ("fp6_e3m2", "mxfp6_e3m2_32"),
         ("fp6_e2m3", "mxfp6_e2m3_32"), (torch.float4_e2m1fn_x2, "mxfp4_e2m1_32")]


@pytest.mark.parametrize("elem,fmt", CASES, ids=[c[1] for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_torchao(elem, fmt, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(128, 512, generator=g) * torch.logspace(-3, 3, 128).unsqueeze(1)).to(dtype)
    scale, data = mx.to_mx(x, elem, 32)
    ref = mx.to_dtype(data, scale, elem, 32, dtype)
    ours = quantize(x, fmt)
    assert ours.dtype == ref.dtype
    assert torch.equal(ours.float(), ref.float())
    assert np.array_equal(quantize(x.float().numpy(), fmt), ref.float().numpy()) or dtype != torch.float32


def test_nvfp4_bit_exact_against_torchao():
    """NVFP4 (e2m1, block 16, e4m3 block scales under an fp32 tensor scale amax / (448 x 6)):
    torchao's two-level NVFP4Tensor round trip, bit for bit, on ordinary, tiny and huge data."""
    import numpy as np
    import torch

    nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    from quant.formats import parse_format
    from quant.quantize import quantize

    f = parse_format("nvfp4")
    assert f.bits_per_element == 4.5 and f.unit_keys == ("nvfp4_16",)
    g = torch.Generator().manual_seed(0)
    for shape, scale in (((64, 128), 3.0), ((7, 32), 1e-3), ((16, 64), 1e4), ((3, 5, 48), 1.0)):
        x = torch.randn(*shape, generator=g) * scale
        ref = nv.NVFP4Tensor.to_nvfp4(x.reshape(-1, shape[-1]).contiguous(),
                                      per_tensor_scale=nv.per_tensor_amax_to_scale(x.abs().amax()))
        ref = ref.dequantize(torch.float32).reshape(shape)
        ours = quantize(x, "nvfp4")
        assert torch.equal(ours, ref), shape
        assert np.array_equal(quantize(x.numpy(), "nvfp4"), ours.numpy())  # the NumPy path: the same bits
