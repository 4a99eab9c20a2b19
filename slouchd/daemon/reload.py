"""What a reload (SIGHUP) changes: a pure plan from the old and new configuration.

:func:`plan_reload` decides; :meth:`slouchd.daemon.core.Daemon.reload` checks the new file first
(:func:`check_new_config`) and applies the plan. Nothing here does I/O except that check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slouchd.config import Config, WearerSettings, check_catalog
from slouchd.daemon.sources import plan_source
from slouchd.daemon.trackers import new_tracker

SENSOR_FIELDS = ("sensor", "profile", "mount", "speed", "seed")
"""A wearer's keys whose change means reconnecting its sensor (the rest apply in place)."""


@dataclass(frozen=True)
class ReloadPlan:
    """What applying a new configuration does.

    Attributes:
        add: wearers to start, in the new file's order.
        remove: names of running wearers to stop.
        swap: running wearers that stay and take their new table (settings apply in place),
            in the new file's order.
        restart: names among ``swap`` whose sensor must be reconnected.
        replace_publisher: [mqtt] or [homeassistant] changed (or the password file was rotated):
            a new MQTT session replaces the running one.
        clear_discovery: the old session removes its Home Assistant discovery (same broker, and
            discovery switched off or moved to another prefix).
        clear_topics: the old session clears its retained topics (same broker, new base topic).
        logging_changed: ``daemon.log_level`` or ``daemon.log_format`` changed.
        state_dir_changed: ``daemon.state_dir`` changed (applies only on a restart).
    """

    add: tuple[WearerSettings, ...] = ()
    remove: tuple[str, ...] = ()
    swap: tuple[WearerSettings, ...] = ()
    restart: tuple[str, ...] = ()
    replace_publisher: bool = False
    clear_discovery: bool = False
    clear_topics: bool = False
    logging_changed: bool = False
    state_dir_changed: bool = False

    def in_order(self, new: Config) -> list[tuple[WearerSettings, bool]]:
        """Every wearer of ``new`` with True if it is added, False if it is swapped."""
        added = {w.name for w in self.add}
        return [(w, w.name in added) for w in new.wearers]


def sensor_changed(old: WearerSettings, new: WearerSettings) -> bool:
    """True if the wearer's sensor must be reconnected for ``new``."""
    return any(getattr(old, f) != getattr(new, f) for f in SENSOR_FIELDS)


def plan_reload(old: Config, new: Config, running: Mapping[str, WearerSettings], *,
                password_changed: bool = False) -> ReloadPlan:
    """What to change to go from ``old`` to ``new``.

    Args:
        old: the configuration in force.
        new: the checked new configuration.
        running: the running wearers' tables by name (what they were last given).
        password_changed: the MQTT password file now holds another password (a rotated
            ``password_file`` applies on SIGHUP too).
    """
    new_names = {w.name for w in new.wearers}
    add = tuple(w for w in new.wearers if w.name not in running)
    swap = tuple(w for w in new.wearers if w.name in running)
    same_broker = (old.mqtt.host, old.mqtt.port) == (new.mqtt.host, new.mqtt.port)
    replace = (new.mqtt != old.mqtt or new.homeassistant != old.homeassistant or password_changed)
    old_ha, new_ha = old.homeassistant, new.homeassistant
    return ReloadPlan(
        add=add,
        remove=tuple(name for name in running if name not in new_names),
        swap=swap,
        restart=tuple(w.name for w in swap if sensor_changed(running[w.name], w)),
        replace_publisher=replace,
        clear_discovery=replace and same_broker and old_ha.discovery and (
            not new_ha.discovery or new_ha.discovery_prefix != old_ha.discovery_prefix),
        clear_topics=replace and same_broker and new.mqtt.base_topic != old.mqtt.base_topic,
        logging_changed=(new.daemon.log_level, new.daemon.log_format)
        != (old.daemon.log_level, old.daemon.log_format),
        state_dir_changed=new.daemon.state_dir != old.daemon.state_dir,
    )


def check_new_config(new: Config) -> None:
    """Refuse (raise) before anything changes: unknown profiles, bad profile or replay files,
    settings that do not make a working tracker.

    Raises:
        ConfigError, OSError, ValueError, TypeError: what is wrong, naming the file and key.
    """
    for w in new.wearers:
        plan_source(w, new)
        new_tracker(new, new.wearer_detection(w), None, new.wearer_wellbeing(w))
    check_catalog(new)  # the stretch catalogue and each default_session in it
