"""Design-space reports: result tables (latency, per-op, serving, sweep, sizing, search, scaling
fits) -> one self-contained HTML file and a Markdown twin (``mpqsim report``)."""

from reports.inputs import Inputs, read_inputs
from reports.render import build_report

__all__ = ["Inputs", "read_inputs", "build_report"]
