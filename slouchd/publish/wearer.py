"""What the publisher needs to know about one wearer: names, stable ids, settings in force."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slouchd.posture.settings import DetectionSettings

_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")

BATTERY = "battery"
"""Capability: the sensor reports a battery level (the state's ``battery``)."""
RSSI = "rssi"
"""Capability: the sensor is heard over radio, so a signal strength exists (the state's ``rssi``)."""
PLAN = "plan"
"""Not of the sensor but of the wearer's config: ``[coach.plan] enabled``, so the training plan's
day and minutes exist (the state's ``plan_day``, ``training_done_min``)."""
SENSOR_CAPABILITIES: frozenset[str] = frozenset({BATTERY, RSSI})
ALL_CAPABILITIES: frozenset[str] = SENSOR_CAPABILITIES | {PLAN}

# The detection settings that commands change and that the state JSON reports as "in force".
STATE_SETTINGS = ("threshold_deg", "hysteresis_deg", "dwell_s", "mode", "alerts_enabled")


def stable_sensor_id(sensor: str, wearer: str) -> str:
    """A stable id for Home Assistant unique ids, from the ``[[wearers]] sensor`` value.

    A BLE address gives its 12 hex digits in lower case (``"C4:AA:10:2B:33:01"`` ->
    ``"c4aa102b3301"``), so the ids survive restarts, renames and a move to another host.
    Simulated and replayed sources have no hardware: ``"sim-<wearer>"`` / ``"replay-<wearer>"``.
    An advertised name becomes a slug of that name (``"BBC micro:bit"`` -> ``"bbc-micro-bit"``).
    The result only holds ``[a-z0-9-]`` (what HA allows in discovery ids, plus no ``_``, which
    slouchd uses as its separator).
    """
    s = sensor.strip()
    if _MAC.match(s):
        return re.sub(r"[:-]", "", s).lower()
    if s.lower() == "simulated":
        return f"sim-{_slug(wearer)}"
    if s.lower().startswith("replay:"):
        return f"replay-{_slug(wearer)}"
    return _slug(s) or f"sensor-{_slug(wearer)}"


def first_sensor_id_clash(wearers: Sequence[tuple[str, str]]) -> tuple[int, int, str] | None:
    """The first two wearers, given as ``(sensor, name)``, that get the same sensor id.

    Home Assistant keys devices and entities on that id, so two wearers sharing it would
    overwrite each other's entities (``ana_1`` and ``ana-1`` both simulated give ``sim-ana-1``;
    one BLE address written twice gives one id). Returns ``(i, j, id)`` with ``i < j``, or None.
    """
    first: dict[str, int] = {}
    for j, (sensor, name) in enumerate(wearers):
        sensor_id = stable_sensor_id(sensor, name)
        if sensor_id in first:
            return first[sensor_id], j, sensor_id
        first[sensor_id] = j
    return None


class DeclaresBattery(Protocol):
    """What :func:`sensor_capabilities` reads of a firmware profile
    (:class:`slouchd.sensors.profiles.Profile`): its ``[battery]`` table, or None."""

    @property
    def battery(self) -> object | None: ...


def sensor_capabilities(sensor: str, profile: DeclaresBattery | None) -> frozenset[str]:
    """What a wearer's configured source can ever report, beyond the posture itself.

    * ``simulated`` and ``replay:PATH``: no battery and no radio (a recording holds only samples).
    * a BLE sensor: a signal strength (from its advertisements), and a battery level when its
      firmware profile declares a ``[battery]`` characteristic. With no profile configured
      (matched when the sensor is found) a battery may exist, so it is assumed.

    Pure: the caller loads the profile. Home Assistant gets no entity for a capability that is
    missing (docs/homeassistant.md, "Capabilities").

    Args:
        sensor: the ``[[wearers]] sensor`` value.
        profile: the wearer's firmware profile, None when none is configured.

    Returns:
        A subset of :data:`SENSOR_CAPABILITIES`.
    """
    s = sensor.strip().lower()
    if s == "simulated" or s.startswith("replay:"):
        return frozenset()
    if profile is not None and profile.battery is None:
        return frozenset({RSSI})
    return SENSOR_CAPABILITIES


def battery_can_exist(sensor: str, profile: DeclaresBattery | None) -> bool:
    """Whether a battery level can ever come from this source (see :func:`sensor_capabilities`)."""
    return BATTERY in sensor_capabilities(sensor, profile)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class WearerInfo:
    """One wearer as seen by MQTT and Home Assistant.

    Attributes:
        name: the wearer's name, used in topics (``slouchd/<name>/...``).
        sensor_id: stable hardware id (see :func:`stable_sensor_id`); HA unique ids derive from it.
        model: sensor model for the HA device page (e.g. "micro:bit v2").
        manufacturer: sensor maker for the HA device page.
        profile: firmware profile name, shown as the device's hardware version.
        sw_version: sensor firmware version, if known.
        detection: the detection settings in force for this wearer (global plus overrides).
        capabilities: what the sensor can report beyond posture (:data:`BATTERY`, :data:`RSSI`;
            see :func:`sensor_capabilities`); Home Assistant gets no entity for the others.
    """

    name: str
    sensor_id: str
    model: str = ""
    manufacturer: str = ""
    profile: str = ""
    sw_version: str = ""
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    capabilities: frozenset[str] = ALL_CAPABILITIES

    @property
    def has_battery(self) -> bool:
        return BATTERY in self.capabilities

    def settings_state(self) -> dict[str, Any]:
        """The settings part of the state JSON: what the number/switch/select entities show."""
        return {k: getattr(self.detection, k) for k in STATE_SETTINGS}

    def with_settings(self, changes: dict[str, Any]) -> WearerInfo:
        """A copy with some detection settings changed (keys not in DetectionSettings ignored)."""
        known = {f.name for f in dataclasses.fields(DetectionSettings)}
        picked = {k: v for k, v in changes.items() if k in known}
        if not picked:
            return self
        return dataclasses.replace(self, detection=dataclasses.replace(self.detection, **picked))
