"""``mpqsim devices``."""

from __future__ import annotations

from mpqsim.cli import add_listing


def _devices():
    from hwmodels.listing import devices_table

    return devices_table()


def register(sub) -> None:
    add_listing(sub, "devices", "list bundled devices and their peaks", _devices)
