"""quant: number formats, precision maps and (with the ``quant`` extra) fake-quantized models.

Everything importable from here works without torch: the format grammar, quantize-dequantize on
NumPy arrays (and on torch tensors when torch is installed), metrics and precision maps.
"""

from quant.formats import Format, parse_format
from quant.metrics import error_stats, sqnr
from quant.precision import PRESETS, PrecisionMap, preset_map
from quant.quantize import ROUNDINGS, quantize

__all__ = ["Format", "parse_format", "quantize", "ROUNDINGS", "sqnr", "error_stats", "PrecisionMap",
           "PRESETS", "preset_map"]
