"""Which sensor errors no restart of one wearer can cure (the process must restart)."""

from __future__ import annotations

from slouchd.sensors.base import SourceFatal


def is_fatal(err: BaseException) -> bool:
    """An error no restart of this wearer can cure: the whole process must restart with
    ``err.exit_code`` (see :class:`slouchd.sensors.base.SourceFatal`)."""
    return isinstance(err, SourceFatal)
