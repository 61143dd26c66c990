"""quant: number formats, precision maps and (with the ``quant`` extra) fake-quantized models.

Everything importable from here without torch: the format grammar and precision maps.
"""

from quant.formats import Format, parse_format
from quant.precision import PrecisionMap, PRESETS, preset_map

__all__ = ["Format", "parse_format", "PrecisionMap", "PRESETS", "preset_map"]
