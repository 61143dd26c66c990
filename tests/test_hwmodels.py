import pytest
import yaml

from hwmodels import bundled_devices, load_device
from hwmodels.spec import DEVICE_DIR
from mpqsim import InputError

REQUIRED = ["h100-sxm", "h100-pcie", "h200", "a100-80gb", "a100-40gb", "rtx-a6000", "l40s", "b200", "mi300x",
            "custom-mx"]


def test_required_devices_are_bundled():
    assert set(REQUIRED) <= set(bundled_devices())


@pytest.mark.parametrize("name", REQUIRED)
def test_every_number_cites_a_listed_source(name):
    from importlib import resources

    from hwmodels.generator import generate, is_design

    doc = yaml.safe_load((resources.files("hwmodels") / DEVICE_DIR / f"{name}.yaml").read_text())
    if is_design(doc):  # a generated accelerator: its derived numbers cite the generator
        doc = generate(doc, name)

    def walk(node, path):
        if isinstance(node, dict) and "value" in node:
            assert node.get("source") in doc["sources"], path
            return 1
        if isinstance(node, dict):
            return sum(walk(v, f"{path}.{k}") for k, v in node.items() if k != "sources")
        return 0

    assert walk(doc, name) >= 15
    dev = load_device(name)
    assert dev.memory_bytes > 0 and dev.bandwidth > 0 and dev.high_unit in dev.units


def test_h100_numbers(h100):
    assert h100.peak("bf16") == 989e12 and h100.peak("fp8") == 1979e12
    assert h100.bandwidth == 3.35e12 and h100.memory_bytes == 80e9
    assert "int4" not in h100.units  # Hopper has no INT4 tensor-core rate


def _write(tmp_path, doc):
    p = tmp_path / "dev.yaml"
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return str(p)


def _valid_doc():
    from importlib import resources

    return yaml.safe_load((resources.files("hwmodels") / DEVICE_DIR / "h100-sxm.yaml").read_text())


def test_loads_from_path(tmp_path):
    assert load_device(_write(tmp_path, _valid_doc())).peak("bf16") == 989e12


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: d["memory_bandwidth_tbs"].pop("source"), "needs a 'source'"),
    (lambda d: d["memory_bandwidth_tbs"].update(source="nowhere"), "not listed under 'sources'"),
    (lambda d: d["memory_bandwidth_tbs"].update(value=-3), "must be > 0"),
    (lambda d: d["memory_bandwidth_tbs"].update(value="fast"), "must be a finite number"),
    (lambda d: d.pop("tdp_w"), "missing field"),
    (lambda d: d["peak_tflops"].update(int2={"value": 1, "source": "NV-H100"}), "unknown compute unit"),
    (lambda d: d["efficiency"]["memory"].update(value=1.5), "must be <= 1"),
    (lambda d: d.pop("sources"), "missing 'sources'"),
])
def test_bad_device_files(tmp_path, mutate, msg):
    doc = _valid_doc()
    mutate(doc)
    with pytest.raises(InputError, match=msg):
        load_device(_write(tmp_path, doc))


def test_malformed_yaml(tmp_path):
    with pytest.raises(InputError, match="malformed YAML"):
        load_device(_write(tmp_path, "name: x\npeak_tflops: [1, 2\n"))


def test_unknown_device_lists_choices():
    with pytest.raises(InputError, match="h100-sxm"):
        load_device("h900")


def test_overrides_are_marked(tmp_path):
    dev = load_device("custom-mx", {"peak_tflops.mxint4": 8000, "memory_bandwidth_tbs": 6})
    assert dev.peak("mxint4") == 8000e12 and dev.bandwidth == 6e12
    assert dev.units["mxint4"].source == "override"


def test_per_unit_compute_efficiency(tmp_path, h100):
    assert h100.compute_efficiency("int8") == pytest.approx(0.452)
    assert h100.compute_efficiency("bf16") == h100.eff_compute
    doc = _valid_doc()
    doc["efficiency"]["compute_by_unit"]["fp4"] = {"value": 0.5, "source": "MLE"}
    with pytest.raises(InputError, match="compute_by_unit names 'fp4'"):
        load_device(_write(tmp_path, doc))


@pytest.mark.parametrize("key", ["peak_tflop.bf16", "memory_bandwith_tbs", "efficiency.memroy", "tdp", "peak_tflops.int3"])
def test_misspelt_override_is_an_error(key):
    with pytest.raises(InputError, match=rf"--set {key}: not a device number; valid keys"):
        load_device("h100-sxm", {key: 1.0})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_override_values_are_validated(value):
    with pytest.raises(InputError, match="memory_bandwidth_tbs"):
        load_device("h100-sxm", {"memory_bandwidth_tbs": value})


def test_override_can_add_a_unit_and_keeps_accepts():
    dev = load_device("h100-sxm", {"peak_tflops.mxint4": 4000})
    assert dev.peak("mxint4") == 4000e12 and dev.units["mxint4"].accepts == ("mxint4_32",)


def test_typo_in_accepts_is_an_error(tmp_path):
    doc = _valid_doc()
    doc["peak_tflops"]["bf16"]["accepts"] = ["bf16", "mxnit4_32"]
    with pytest.raises(InputError, match="unknown unit key 'mxnit4_32'; valid: fp32, bf16"):
        load_device(_write(tmp_path, doc))


def test_every_format_unit_key_is_a_valid_accepts_entry():
    from hwmodels.spec import UNIT_ACCEPTS, UNIT_KEY_RE
    from quant.formats import parse_format

    for f in ("bf16", "fp16", "fp32", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp4_e2m1", "int8_chan", "int4_tens",
              "mxint8_32", "mxint4_32", "mxint4_16", "mxfp8_e4m3_32", "mxfp6_e2m3_32", "mxfp4_e2m1_64"):
        for k in parse_format(f).unit_keys:
            assert UNIT_KEY_RE.fullmatch(k), (f, k)
    assert all(UNIT_KEY_RE.fullmatch(k) for v in UNIT_ACCEPTS.values() for k in v)


def test_unknown_fields_are_errors(tmp_path):
    doc = _valid_doc()
    doc["memory_bandwith_tbs"] = {"value": 3, "source": "MLE"}
    with pytest.raises(InputError, match="unknown field"):
        load_device(_write(tmp_path, doc))
    doc = _valid_doc()
    doc["efficiency"]["memroy"] = {"value": 0.8, "source": "MLE"}
    with pytest.raises(InputError, match="efficiency has unknown key"):
        load_device(_write(tmp_path, doc))


def test_loading_is_memoised_on_content(tmp_path):
    doc = _valid_doc()
    p = _write(tmp_path, doc)
    a, b = load_device(p), load_device(p)
    assert a is b  # the same immutable spec
    with pytest.raises(TypeError, match="read-only"):
        a.units["bf16"] = None
    doc["memory_bandwidth_tbs"]["value"] = 1.5
    _write(tmp_path, doc)
    assert load_device(p).bandwidth == 1.5e12  # an edited file is never served stale


def test_devices_table_says_where_kernel_constants_come_from():
    from hwmodels.listing import devices_table

    t = devices_table().set_index("device")
    assert t.loc["h200", "architecture"] == "hopper" and t.loc["h200", "kernels"] == "hopper fit"
    assert t.loc["a40", "kernels"] == "ampere fit"
    assert t.loc["b200", "kernels"] == "hopper fit, transferred"


def test_resident_threads_per_sm(tmp_path):
    """max_threads_per_sm: read with its source, 2048 (an sm_80 / sm_90 SM) when absent, validated."""
    assert load_device("a40").max_threads_per_sm == 1536 and load_device("h100-sxm").max_threads_per_sm == 2048
    doc = _valid_doc()
    del doc["max_threads_per_sm"]
    assert load_device(_write(tmp_path, doc)).max_threads_per_sm == 2048
    doc["max_threads_per_sm"] = {"value": 1024, "source": "MLE"}
    assert load_device(_write(tmp_path, doc)).max_threads_per_sm == 1024
    doc["max_threads_per_sm"] = {"value": -1, "source": "MLE"}
    with pytest.raises(InputError, match="max_threads_per_sm"):
        load_device(_write(tmp_path, doc))
    assert load_device("h100-sxm", {"max_threads_per_sm": 1536}).max_threads_per_sm == 1536


def test_int32_rate_bounds_dequantization(tmp_path):
    """int32_tops: the rate per-row dequantization is priced on. Hopper and Ada kept Ampere's 64 INT32
    lanes per SM while doubling the fp32 lanes, so their INT32 rate is half the fp32 peak, the A100's
    equal to it; a file without it falls back to its fp32 rate; validated like every number."""
    h100, a100 = load_device("h100-sxm"), load_device("a100-80gb")
    assert h100.dequant_ops == pytest.approx(h100.vector_flops / 2, rel=0.01)
    assert a100.dequant_ops == pytest.approx(a100.vector_flops)
    assert all(load_device(n).int32_ops for n in ("h100-pcie", "h200", "a40", "rtx-a6000", "l40s", "b200", "mi300x"))
    doc = _valid_doc()
    doc.pop("int32_tops", None)
    dev = load_device(_write(tmp_path, doc))
    assert dev.int32_ops is None and dev.dequant_ops == dev.vector_flops
    doc["int32_tops"] = {"value": 0, "source": "MLE"}
    with pytest.raises(InputError, match="int32_tops"):
        load_device(_write(tmp_path, doc))
    assert load_device("h100-sxm", {"int32_tops": 50}).dequant_ops == 50e12
    # the generator: one INT32 lane per vector lane unless the design says; h100-like gives GH100's 64
    like = load_device("h100-like")
    assert like.dequant_ops == pytest.approx(like.vector_flops / 2)
