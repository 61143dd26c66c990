"""quantize-dequantize: the checks of docs/reference/mx_formats.md, exact grids, hand-computed
vectors, NumPy/torch and kernel/vectorised agreement bit for bit, and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpqsim import InputError
from quant import quantize, sqnr
from quant.backend import NumpyOps
from quant.formats import parse_format
from quant.quantize import _quantize_last

torch = pytest.importorskip("torch")

MX = ["mxint8_32", "mxint6_32", "mxint4_32", "mxint3_32", "mxint2_32", "mxfp8_e4m3_32", "mxfp8_e5m2_32",
      "mxfp6_e3m2_32", "mxfp6_e2m3_32", "mxfp4_e2m1_32", "mxint4_16", "mxfp4_e2m1_128"]
SCALED = ["fp8_e4m3", "fp8_e5m2_chan", "fp6_e3m2_g32", "fp4_e2m1", "fp4_e2m1_chan_mse", "int8_chan", "int8_tens",
          "int4_g128", "int3_g32", "int4_tens", "int4_chan_mse", "int4_g128_asym", "int3_g32_asym_mse"]
CODEBOOK = ["nf4_64", "nf3_64", "dyn8_64", "dyn4_32"]
CASTS = ["bf16", "fp16"]
ALL = MX + SCALED + CODEBOOK + CASTS
DETERMINISTIC = ["even", "nearest", "floor"]


def bits(a):
    return np.asarray(a, dtype=np.float32).view(np.int32)


def vectorised(x, f, axis=-1, rounding="even"):
    """The reference path, bypassing the fused kernel."""
    v = np.moveaxis(x.astype(np.float32), axis, -1)
    return np.moveaxis(_quantize_last(v, parse_format(f), rounding, NumpyOps, None), -1, axis)


def ordinary(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- exact grids
def test_element_grids():
    g = lambda f: sorted({abs(v) for v in parse_format(f).grid})  # noqa: E731
    assert g("mxfp4_e2m1_32") == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert g("mxfp6_e2m3_32") == [j / 8 for j in range(8)] + [1 + j / 8 for j in range(8)] + \
        [2 + j / 4 for j in range(8)] + [4 + j / 2 for j in range(8)]
    assert g("mxfp6_e3m2_32") == [j / 16 for j in range(4)] + [m * 2.0**e for e in range(-2, 5)
                                                               for m in (1, 1.25, 1.5, 1.75)]
    e4m3 = g("mxfp8_e4m3_32")
    assert len(e4m3) == 127 and e4m3[1] == 2**-9 and e4m3[-1] == 448 and e4m3[-2] == 416
    e5m2 = g("mxfp8_e5m2_32")
    assert len(e5m2) == 124 and e5m2[1] == 2**-16 and e5m2[-1] == 57344
    assert g("mxint4_32") == [j / 4 for j in range(8)]
    assert g("mxint8_32")[-1] == 127 / 64 and g("mxint2_32") == [0, 1]
    assert g("int4_g128") == list(range(8))
    nf4 = parse_format("nf4_64").grid
    assert len(nf4) == 16 and nf4[0] == -1 and nf4[-1] == 1 and 0 in nf4
    assert np.allclose(nf4[9:12], [0.1609302, 0.2461123, 0.3379152], atol=1e-6)  # QLoRA's NF4 table
    assert len(parse_format("dyn8_64").grid) == 256


@pytest.mark.parametrize("f", ["mxfp4_e2m1_32", "mxfp6_e2m3_32", "mxfp6_e3m2_32", "mxfp8_e4m3_32", "mxint4_32",
                               "mxint8_32"])
def test_grid_points_are_fixed_points(f):
    fmt = parse_format(f)
    grid = fmt.grid.astype(np.float32)
    # put the largest normal in every block so that the shared scale is 1
    n = 31
    chunks = [grid[i:i + n] for i in range(0, len(grid), n)]
    x = np.stack([np.concatenate([[fmt.max_normal], np.pad(c, (0, n - len(c)))]) for c in chunks]).astype(np.float32)
    assert np.array_equal(quantize(x, f), x)


# ---------------------------------------------------------------- hand-computed vectors
def test_mxint4_hand_vector():
    x = np.array([1.0, 0.3, -0.6, 0.1, 0.125, 0.375, -1.9, 1.8], np.float32)
    # amax 1.9 -> X = 2^0; elements are multiples of 1/4 in [-1.75, 1.75], ties to even
    assert quantize(x, "mxint4_8").tolist() == [1.0, 0.25, -0.5, 0.0, 0.0, 0.5, -1.75, 1.75]
    assert quantize(x, "mxint4_8", rounding="nearest").tolist() == [1.0, 0.25, -0.5, 0.0, 0.25, 0.5, -1.75, 1.75]
    assert quantize(x, "mxint4_8", rounding="floor").tolist() == [1.0, 0.25, -0.5, 0.0, 0.0, 0.25, -1.75, 1.75]


def test_mxfp4_hand_vector_with_saturation():
    x = np.array([6.5, 0.3, -0.6, 100.0] + [0.0] * 28, np.float32)
    # amax 100: floor(log2 100) = 6, emax(e2m1) = 2 -> X = 16; 100/16 = 6.25 saturates to 6
    q = quantize(x, "mxfp4_e2m1_32")
    assert q[:4].tolist() == [8.0, 0.0, -0.0, 96.0]


def test_ragged_last_block_and_large_block():
    x = np.array([4.0, 1.0, 0.5, 0.3, 0.2], np.float32)
    # blocks [4, 1, 0.5, 0.3] (X = 4, step 1: 0.5 ties to even 0) and [0.2] (X = 1/8, step 1/32: 6.4 -> 6)
    assert quantize(x, "mxint4_4").tolist() == [4.0, 1.0, 0.0, 0.0, 0.1875]
    assert np.array_equal(quantize(x, "mxint4_1024"), quantize(x, "mxint4_5"))  # block > axis: one block


def test_all_zero_block_and_nan_inf_blocks():
    x = np.zeros((3, 8), np.float32)
    x[1, 2] = np.nan
    x[2, :] = np.arange(8)
    x[2, 5] = np.inf
    for f in ["mxint4_4", "mxfp8_e4m3_4", "int4_g4", "nf4_4", "fp4_e2m1_g4"]:
        q = quantize(x, f)
        assert np.array_equal(q[0], np.zeros(8)) and not np.signbit(q[0]).any()
        assert np.isnan(q[1, :4]).all() and (q[1, 4:] == 0).all()
        assert np.isnan(q[2, 4:]).all() and np.isfinite(q[2, :4]).all()


def test_subnormal_elements():
    # amax 448 -> X = 1 for e4m3: 2^-9 is the smallest subnormal, 2^-10 ties to 0 (even), 3*2^-10 -> 2^-8
    x = np.array([448.0, 2**-9, 2**-10, 3 * 2**-10, 1.5 * 2**-7], np.float32)
    q = quantize(x, "mxfp8_e4m3_8")
    assert q.tolist() == [448.0, 2**-9, 0.0, 2**-8, 1.5 * 2**-7]


def test_axis_other_than_last_and_3d():
    x = ordinary((4, 64, 6), seed=3)
    for axis in (0, 1, 2, -2):
        q = quantize(x, "mxint4_32", axis=axis)
        ref = np.moveaxis(quantize(np.ascontiguousarray(np.moveaxis(x, axis, -1)), "mxint4_32"), -1, axis)
        assert np.array_equal(q, ref)
    # axis 1 of length 64 = two blocks per (i, k) column
    col = x[2, :, 4]
    assert np.array_equal(quantize(x, "mxint4_32", axis=1)[2, :, 4], quantize(col, "mxint4_32"))


def test_channel_and_tensor_granularity():
    w = ordinary((8, 100), seed=4)
    q = quantize(w, "int8_chan")
    for r in range(8):
        scale = np.abs(w[r]).max() / np.float32(127)
        assert np.allclose(q[r], np.clip(np.rint(w[r] / scale), -127, 127) * scale, rtol=0, atol=0)
    qt = quantize(w, "int4_tens")
    scale = np.abs(w).max() / np.float32(7)
    assert np.array_equal(qt, (np.clip(np.rint(w / scale), -7, 7) * scale).astype(np.float32))


def test_mse_calibration_never_worse_than_absmax():
    x = np.concatenate([ordinary((16, 256), 5), ordinary((16, 1), 6, 20.0)], axis=1)  # outlier per row
    for a, b in (("int4_chan", "int4_chan_mse"), ("int3_g32", "int3_g32_mse"), ("fp4_e2m1_chan", "fp4_e2m1_chan_mse"),
                 ("int4_g64_asym", "int4_g64_asym_mse")):
        assert sqnr(x, quantize(x, b)) >= sqnr(x, quantize(x, a)) - 1e-9
    assert sqnr(x, quantize(x, "int4_chan_mse")) > sqnr(x, quantize(x, "int4_chan")) + 0.5


def test_asymmetric_int_uses_all_codes():
    x = np.linspace(-1, 3, 64, dtype=np.float32)
    q = quantize(x, "int4_g64_asym")
    assert len(np.unique(q)) == 16 and np.abs(q - x).max() <= (4 / 15) / 2 + 1e-6


# ---------------------------------------------------------------- reference checks (mx_formats.md)
@pytest.mark.parametrize("f", MX)
def test_mxint_and_mxfp_on_grid_within_half_step(f):
    fmt = parse_format(f)
    x = ordinary((16, 256), seed=7, scale=3.0)
    q = quantize(x, f)
    blocks_x = x.reshape(16, -1, fmt.block)
    blocks_q = q.reshape(16, -1, fmt.block)
    amax = np.abs(blocks_x).max(-1, keepdims=True)
    scale = 2.0 ** (np.floor(np.log2(amax)) - fmt.emax)
    p = blocks_q / scale
    assert np.isin(np.abs(p), np.abs(fmt.grid)).all()
    # error within half a step of the element's binade, except where saturated
    a = np.abs(blocks_x / scale)
    e = np.maximum(np.floor(np.log2(np.maximum(a, 1e-30))), fmt.emin) if fmt.is_float_element else 0
    step = 2.0 ** (e - fmt.mbits) if fmt.is_float_element else 2.0 ** -fmt.frac_bits
    sat = a > fmt.max_normal
    assert (np.abs(p - blocks_x / scale)[~sat] <= step[~sat] / 2 + 1e-12).all() if fmt.is_float_element else \
        (np.abs(p - blocks_x / scale)[~sat] <= step / 2 + 1e-12).all()


@pytest.mark.parametrize("k", range(2, 9))
def test_mxint_equals_block_floating_point_reference(k):
    """Independent formulation of the papers' block-floating-point quantizer (float64, log2)."""
    x = ordinary((32, 128), seed=k).astype(np.float64)
    blocks = x.reshape(32, -1, 32)
    amax = np.abs(blocks).max(-1, keepdims=True)
    shared = 2.0 ** np.floor(np.log2(amax))
    mant = np.clip(np.round(blocks / shared * 2 ** (k - 2)), -(2 ** (k - 1) - 1), 2 ** (k - 1) - 1)
    ref = (mant / 2 ** (k - 2) * shared).reshape(x.shape)
    assert np.array_equal(quantize(x.astype(np.float32), f"mxint{k}_32"), ref.astype(np.float32))


def test_exact_floor_log2_not_float_log2():
    # amax one ulp below 2: floor(log2) must be 0, not 1 (a float32 log2 rounds up to 1.0)
    below_two = np.nextafter(np.float32(2), np.float32(0))
    x = np.array([below_two, 0.5] + [0] * 30, np.float32)
    q = quantize(x, "mxint8_32")
    assert q[1] == 0.5 and q[0] == np.float32(127 / 64)  # X = 1: saturates at 1.984375


def test_mxfp8_e4m3_unit_scale_equals_torch_float8_cast():
    rng = np.random.default_rng(9)
    x = rng.uniform(-600, 600, (64, 32)).astype(np.float32)
    x[:, 0] = rng.uniform(256, 448, 64)  # amax in [256, 512): shared exponent 8 - 8 = 0
    x[:, 1:] = np.clip(x[:, 1:], -511, 511)
    x[::3, 2] = rng.uniform(1e-4, 3e-3, 22)  # subnormal range of e4m3
    t = torch.from_numpy(x)
    ref = t.clamp(-448, 448).to(torch.float8_e4m3fn).float().numpy()
    assert np.array_equal(bits(quantize(x, "mxfp8_e4m3_32")), bits(ref))


@pytest.mark.parametrize("f,dtype", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_ieee_casts_equal_torch(f, dtype):
    rng = np.random.default_rng(10)
    x = (rng.standard_normal(20000) * np.exp(rng.uniform(-120, 87, 20000))).astype(np.float32)
    x[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    x[5:10] = [65519.0, 65520.0, 1e-8, 3e-8, 3.4e38]
    ref = torch.from_numpy(x).to(getattr(torch, dtype)).float().numpy()
    q = quantize(x, f)
    assert np.array_equal(bits(q)[~np.isnan(ref)], bits(ref)[~np.isnan(ref)]) and np.isnan(q[2])


# ---------------------------------------------------------------- NumPy / torch / kernel agreement
@pytest.mark.parametrize("f", ALL)
@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_numpy_torch_and_kernel_agree_bit_for_bit(f, rounding):
    rng = np.random.default_rng(abs(hash((f, rounding))) % 2**32)
    x = (rng.standard_normal((6, 77)) * np.exp(rng.uniform(-40, 40, (6, 1)))).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0
    x[0, 3] = np.inf
    x[5, 70] = 1e-42
    for axis in (0, -1):
        a = quantize(x, f, axis=axis, rounding=rounding)                       # kernel where it applies
        b = vectorised(x, f, axis, rounding)                                   # vectorised NumPy
        c = quantize(torch.from_numpy(x), f, axis=axis, rounding=rounding).numpy()  # torch
        assert np.array_equal(bits(a), bits(b)) and np.array_equal(bits(a), bits(c))


@pytest.mark.parametrize("f", ALL)
def test_torch_vectorised_path_agrees_with_numpy(f):
    """torch's own path (the one a GPU takes), not the CPU kernel, against NumPy's."""
    from quant.backend import ops_for

    rng = np.random.default_rng(12)
    x = (rng.standard_normal((5, 300)) * np.exp(rng.uniform(-30, 30, (5, 1)))).astype(np.float32)
    x[1, 7], x[2, 8], x[3, 9] = np.nan, -np.inf, 1e-42
    t = torch.from_numpy(x)
    for r in DETERMINISTIC:
        got = _quantize_last(t, parse_format(f), r, ops_for(t), None).numpy()
        assert np.array_equal(bits(got), bits(vectorised(x, f, -1, r)))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_torch_dtypes_round_trip(dtype):
    t = torch.randn(16, 64, generator=torch.Generator().manual_seed(0)).to(getattr(torch, dtype))
    q = quantize(t, "mxint4_32")
    assert q.dtype == t.dtype and q.shape == t.shape
    assert torch.equal(q.float(), torch.from_numpy(quantize(t.float().numpy(), "mxint4_32")).to(t.dtype).float())
    x16 = t.float().numpy().astype(np.float16)
    assert quantize(x16, "mxfp4_e2m1_32").dtype == np.float16


def test_stochastic_rounding_is_seeded_and_unbiased():
    x = np.full((4, 4096), 0.3, np.float32)
    x[:, ::32] = 1.0  # every block's max is 1: X = 1, steps of 1/4
    a = quantize(x, "mxint4_32", rounding="stochastic", generator=1)
    assert np.array_equal(a, quantize(x, "mxint4_32", rounding="stochastic", generator=1))
    assert not np.array_equal(a, quantize(x, "mxint4_32", rounding="stochastic", generator=2))
    rest = np.ones(x.shape, bool)
    rest[:, ::32] = False
    assert set(np.unique(a[rest])) == {0.25, 0.5}
    assert abs(a[rest].mean() - 0.3) < 0.005  # unbiased: 0.25 with p 0.8, 0.5 with p 0.2
    t = quantize(torch.from_numpy(x), "nf4_64", rounding="stochastic", generator=torch.Generator().manual_seed(3))
    assert abs(t.numpy()[rest].mean() - 0.3) < 0.01


# ---------------------------------------------------------------- properties
finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 80)), elements=finite),
       f=st.sampled_from(MX + ["nf4_64", "nf3_64", "bf16", "fp16"]), rounding=st.sampled_from(DETERMINISTIC))
def test_idempotent(x, f, rounding):
    """Exact for power-of-two scales (MX) and casts; for codebooks with a +-1 code under even/nearest
    (code x amax / amax can miss the code by an ulp, which floor rounding turns into a step)."""
    if f.startswith("nf") and rounding == "floor":
        return
    q = quantize(x, f, rounding=rounding)
    assert np.array_equal(bits(quantize(q, f, rounding=rounding)), bits(q))


@settings(max_examples=100, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 80)), elements=finite),
       f=st.sampled_from(SCALED), rounding=st.sampled_from(["even", "nearest"]))
def test_idempotent_scaled_to_float_rounding(x, f, rounding):
    """amax / max_normal is not a power of two: re-deriving it costs at most float32 rounding."""
    q = quantize(x, f, rounding=rounding)
    assert np.allclose(quantize(q, f, rounding=rounding), q, rtol=1e-5, atol=0)


@settings(max_examples=150, deadline=None)
@given(x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 80)), elements=finite),
       f=st.sampled_from(MX + SCALED + ["bf16", "fp16"]), rounding=st.sampled_from(["even", "nearest"]))
def test_sign_symmetry(x, f, rounding):
    if parse_format(f).asymmetric:
        return  # an asymmetric range is not symmetric by construction
    assert np.array_equal(quantize(-x, f, rounding=rounding), -quantize(x, f, rounding=rounding))


# ---------------------------------------------------------------- bad input
def test_bad_input():
    x = ordinary((4, 8))
    with pytest.raises(InputError, match="format grammar.*examples"):
        quantize(x, "mxint4-32")
    with pytest.raises(InputError, match="must be > 0"):
        quantize(x, "mxint4_0")
    with pytest.raises(InputError, match="out of range"):
        quantize(x, "int9_g32")
    with pytest.raises(InputError, match="axis 2 does not exist"):
        quantize(x, "mxint4_32", axis=2)
    with pytest.raises(InputError, match="floating-point"):
        quantize(np.arange(8), "mxint4_32")
    with pytest.raises(InputError, match="floating-point"):
        quantize(torch.arange(8), "mxint4_32")
    with pytest.raises(InputError, match="unknown rounding"):
        quantize(x, "mxint4_32", rounding="up")
    with pytest.raises(InputError, match="NumPy array or a torch tensor"):
        quantize([1.0, 2.0], "mxint4_32")


def test_bit_accounting_seed_004():
    assert parse_format("nf4_64").bits_per_element == 4.25 == parse_format("mxint4_32").bits_per_element
    assert math.isclose(parse_format("dyn8_64").bits_per_element, 8.25)


def test_nf4_is_the_published_table():
    """bitsandbytes' NF4 values (csrc/kernels.cu nf4_data), exactly: dequantized NF4 equals bitsandbytes'."""
    from quant.formats import NF4_PUBLISHED

    bnb = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
           -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
           0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
           0.7229568362236023, 1.0]
    assert list(parse_format("nf4_64").grid) == bnb == list(NF4_PUBLISHED)
    assert all(np.float32(v) == v for v in bnb)  # float32 values, as the kernels hold them
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    q = quantize(x, "nf4_64", axis=-1)
    absmax = np.abs(x).max(axis=-1, keepdims=True)
    codes = np.array(bnb, dtype=np.float32)
    ref = codes[np.abs(x / absmax - codes[:, None, None]).argmin(axis=0)] * absmax  # nearest code x absmax
    assert np.allclose(q, ref, rtol=0, atol=1e-6)
