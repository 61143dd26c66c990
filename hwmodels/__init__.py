"""hwmodels: device specs as data (one YAML per device, every number with its source)."""

from hwmodels.spec import ComputeUnit, DeviceSpec, bundled_devices, load_device, parse_device

__all__ = ["ComputeUnit", "DeviceSpec", "bundled_devices", "load_device", "parse_device"]
