"""``mpqsim models``."""

from __future__ import annotations

from mpqsim.cli import add_listing


def _models():
    from workloads import models_table

    return models_table()


def register(sub) -> None:
    add_listing(sub, "models", "list bundled model configs", _models)
