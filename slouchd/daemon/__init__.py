"""The asyncio daemon (``slouchd run``, ``slouchd demo``), in small parts:

* :mod:`~slouchd.daemon.core` - :class:`Daemon`: lifecycle, signals, supervision, applying reloads.
* :mod:`~slouchd.daemon.wearer` - :class:`WearerRuntime`: one wearer's tracker, source, settings.
* :mod:`~slouchd.daemon.host` - :class:`WearerHost`: all a wearer may ask of the daemon.
* :mod:`~slouchd.daemon.reload` - :func:`plan_reload`: what a reload changes (pure).
* :mod:`~slouchd.daemon.mqtt_session` - the publisher, the embedded broker, switching sessions.
* :mod:`~slouchd.daemon.jobs` - housekeeping: status line, watchdog, idle states, reloads.
* :mod:`~slouchd.daemon.persistence` - one wearer's saves.
* :mod:`~slouchd.daemon.sources` - a ``[[wearers]]`` table -> its sensor source.
* :mod:`~slouchd.daemon.constants` - exit codes, cadences, deadlines.

The names below are the package's public face (commands, bench and tests import them from here).
``open_source`` and ``MqttPublisher`` are read from this package when a :class:`Daemon` is built,
so a benchmark may replace them here.
"""

from slouchd.daemon.constants import (
    CALM_DISPATCH_TICKS,
    DISPATCH_TICKS,
    EXIT_ADAPTER,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOFTWARE,
    OVERRIDE_KEYS,
    RESTART_BACKOFF_MAX_S,
    RESTART_BACKOFF_MIN_S,
    SAVE_EVERY_S,
    STATS_EVERY_S,
)
from slouchd.daemon.core import Daemon, run_daemon
from slouchd.daemon.host import View, WearerHost
from slouchd.daemon.reload import ReloadPlan, plan_reload
from slouchd.daemon.sources import SourcePlan, open_source, plan_source
from slouchd.daemon.trackers import new_tracker, wall_iso
from slouchd.daemon.wearer import WearerRuntime
from slouchd.publish.mqtt import MqttPublisher

__all__ = [
    "CALM_DISPATCH_TICKS", "DISPATCH_TICKS", "EXIT_ADAPTER", "EXIT_CONFIG", "EXIT_OK", "EXIT_SOFTWARE",
    "OVERRIDE_KEYS",
    "RESTART_BACKOFF_MAX_S", "RESTART_BACKOFF_MIN_S", "SAVE_EVERY_S", "STATS_EVERY_S",
    "Daemon", "MqttPublisher", "ReloadPlan", "SourcePlan", "View", "WearerHost", "WearerRuntime",
    "new_tracker", "open_source", "plan_reload", "plan_source", "run_daemon", "wall_iso",
]
