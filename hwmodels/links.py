"""Interconnect link kinds and topologies (``hwmodels/links.yaml``, data)."""

from __future__ import annotations

from importlib import resources

import yaml

_DOC = yaml.safe_load((resources.files("hwmodels") / "links.yaml").read_text())
LINK_KINDS: dict[str, dict] = _DOC["kinds"]
TOPOLOGIES: dict[str, str] = _DOC["topologies"]
FAMILIES = tuple(sorted({v["family"] for v in LINK_KINDS.values()}))

__all__ = ["LINK_KINDS", "TOPOLOGIES", "FAMILIES"]
