import pytest

from mpqsim import InputError
from quant.formats import parse_format


@pytest.mark.parametrize("s,bits", [
    ("bf16", 16), ("fp32", 32), ("mxint4_32", 4.25), ("mxint8_32", 8.25), ("mxfp4_e2m1_32", 4.25),
    ("mxfp8_e4m3_32", 8.25), ("mxfp6_e3m2_32", 6.25), ("mxint4_128", 4 + 8 / 128), ("fp4_e2m1", 4),
    ("fp8_e4m3", 8), ("int4_g128", 4 + 16 / 128), ("int8_chan", 8), ("int4_tens", 4), ("int3_g32", 3.5),
    ("nf4_64", 4.25), ("int4_g128_asym", 4 + 20 / 128),
])
def test_bits_per_element_include_scale_overhead(s, bits):
    assert parse_format(s).bits_per_element == pytest.approx(bits)


@pytest.mark.parametrize("s,msg", [
    ("mxint9_32", "out of range"), ("mxint4_0", "must be > 0"), ("mxfp4_e3m1_32", "bits"),
    ("mxfp5_e3m1_32", "unknown float element"), ("int4_g0", "must be > 0"), ("float7", "format grammar"),
])
def test_bad_formats(s, msg):
    with pytest.raises(InputError, match=msg):
        parse_format(s)


def test_unknown_format_shows_grammar_and_examples():
    with pytest.raises(InputError) as e:
        parse_format("int4-g128")
    assert "mxint4_32" in str(e.value) and "int4_g128" in str(e.value)


def test_unit_keys():
    assert parse_format("int4_chan").unit_keys == ("int4", "int8")
    assert parse_format("int4_g128").unit_keys == ()  # group scales along K: dequantize first
    assert parse_format("mxfp4_e2m1_32").unit_keys == ("mxfp4_32", "mxfp6_32", "mxfp8_32")
    assert parse_format("mxint4_16").unit_keys == ("mxint4_16", "mxint8_16")
