"""hwmodels: device specs as data (one YAML per device, every number with its source), their energy
and power model (power.py), and the accelerator generator (generator.py: design file -> device)."""

from hwmodels.generator import generate
from hwmodels.power import PowerModel, power_model
from hwmodels.spec import ComputeUnit, DeviceSpec, bundled_devices, load_device, parse_device

__all__ = ["ComputeUnit", "DeviceSpec", "bundled_devices", "load_device", "parse_device", "PowerModel",
           "power_model", "generate"]
