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

    doc = yaml.safe_load((resources.files("hwmodels") / DEVICE_DIR / f"{name}.yaml").read_text())

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
    (lambda d: d["memory_bandwidth_tbs"].update(value="fast"), "must be a number"),
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
