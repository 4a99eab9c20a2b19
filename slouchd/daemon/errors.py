"""Which sensor errors no restart of one wearer can cure (the process must restart: exit 75)."""

from __future__ import annotations

# The one place the daemon names a concrete BLE exception; to be replaced by the neutral base
# exception of slouchd/sensors/base.py (issue 15).
from slouchd.sensors.ble import AdapterWedged


def is_fatal(err: BaseException) -> bool:
    """An error no restart of this wearer can cure: the whole process must restart."""
    return isinstance(err, AdapterWedged)
