"""Every field slouchd exposes to Home Assistant, in one table (like zigbee2mqtt's "exposes").

One :class:`Expose` row per Home Assistant entity says which JSON key it reads and from which
topic (state, stats or event), its platform, name, unit, classes, category and icon, whether
Home Assistant may set it (and which settings field bounds the value), whether it needs the
sensor link to be meaningful, and which sensor capability it needs. Three things are made from
the table and nothing else:

* the discovery message (:func:`slouchd.publish.homeassistant.discovery_payload`);
* command validation (:data:`COMMANDS`, used by :mod:`slouchd.publish.commands`): a settable
  field is checked by :func:`slouchd.schema.check_value` against the same ``setting(...)``
  metadata as the config file, so a command can never set what the file could not;
* the contract test that every key Home Assistant reads is in what the daemon publishes
  (``tests/publish/test_state_contract.py``, through :func:`read_keys`).

A row whose capability (``needs``) the wearer's sensor can never provide is not announced: its
component is sent as a removal (see :func:`slouchd.publish.homeassistant.discovery_payload`).
The table and the rules are described in ``docs/homeassistant.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slouchd.model import Activity, EventKind, Posture
from slouchd.posture.settings import DetectionSettings
from slouchd.publish.wearer import BATTERY, PLAN, RSSI
from slouchd.schema import FieldSpec, field_spec, setting

STATE, STATS, EVENT = "state", "stats", "event"
"""Topics an entity reads: ``<base>/<wearer>/state``, ``…/stats`` and ``…/event``."""
STRETCH, HISTORY = "stretch", "history"
"""The coach's retained topics ``<base>/<wearer>/stretch`` and ``…/history`` (docs/coach.md)."""
STRETCH_STATUSES = ("idle", "reaching", "holding", "resting", "complete", "abandoned")
"""The ``stretch`` key of the state: idle, or the last session's status."""

SNOOZE_MAX_MIN = 1440.0
"""Longest snooze, minutes. A snooze longer than a day is a forgotten snooze: switch alerts off."""


@dataclass(frozen=True)
class Actions:
    """Commands that are not settings of the config file. Never built: only the metadata of its
    fields is read, as the type and bounds of those commands (like DetectionSettings' fields)."""

    calibrate: bool = setting(True, choices=(True,), doc="true: take the current posture as upright")
    use_file_settings: bool = setting(
        True, choices=(True,),
        doc="true: drop the settings changed from Home Assistant; the config file's values apply")
    snooze_min: float = setting(
        0.0, min=0.0, max=SNOOZE_MAX_MIN, doc="no alerts for this long, minutes; 0 cancels")
    stretch: str = setting(
        "start", pattern=r"[a-z][a-z0-9_]{0,39}",
        doc='guided stretches: "start" ([coach] default_session), "stop", or the name of a session of '
            "the stretch catalogue (an unknown one is refused, naming the known ones)")


@dataclass(frozen=True)
class Expose:
    """One Home Assistant entity.

    Attributes:
        component: the component id in the discovery message; the unique id ends with it.
        platform: the HA platform (sensor, binary_sensor, event, button, number, switch, select).
        name: the entity name (HA prefixes the device name, "slouchd <wearer>").
        key: the JSON key the entity reads from ``topic`` (None: it reads none).
        topic: ``STATE``, ``STATS``, ``EVENT``, ``STRETCH`` or ``HISTORY``.
        settable: the settings dataclass whose field ``command`` (or ``key``) bounds what Home
            Assistant may send; None for read-only entities.
        command: the command key, when it differs from ``key`` (buttons read nothing).
        on_value: binary_sensor only: ON when ``key`` equals this (None: when it is true).
        attributes: a state key whose JSON object becomes the entity's attributes.
        template: the value template, when reading ``key`` plainly will not do (``key`` still
            names what it reads, for the contract test).
        attributes_template: the attributes template, when not one key's object.
        press: button only: the payload it sends (default a JSON ``true``).
        unit: unit of measurement.
        device_class, state_class, entity_category, icon: as in Home Assistant.
        precision: suggested display precision, digits.
        step: number only: the step of the input box.
        options: enum sensor: the possible states (select: the setting's choices are used).
        link: True when the value comes from the sensor, so the entity also needs the sensor
            link online; settings, totals and events only need the bridge.
        expires: the state goes stale (``expire_after``) when not refreshed.
        enabled: enabled by default in Home Assistant (noisy diagnostics are not).
        needs: the sensor capability the value needs (``BATTERY``, ``RSSI``); None: any sensor.
    """

    component: str
    platform: str
    name: str
    key: str | None = None
    topic: str = STATE
    settable: type | None = None
    command: str | None = None
    on_value: str | None = None
    attributes: str | None = None
    template: str | None = None
    attributes_template: str | None = None
    press: str | None = None
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    entity_category: str | None = None
    icon: str | None = None
    precision: int | None = None
    step: float | None = None
    options: tuple[str, ...] | None = None
    link: bool = False
    expires: bool = False
    enabled: bool = True
    needs: str | None = None

    @property
    def command_key(self) -> str | None:
        """The key of ``…/set/<key>`` and of the ``…/set`` JSON object, or None (read-only)."""
        return None if self.settable is None else (self.command or self.key)

    @property
    def reads(self) -> tuple[str, ...]:
        """Every JSON key the entity reads: ``key``, ``attributes`` and those its templates name."""
        named = _READS.findall(f"{self.template or ''} {self.attributes_template or ''}")
        return tuple(dict.fromkeys(k for k in (self.key, self.attributes, *named) if k))

    @property
    def spec(self) -> FieldSpec | None:
        """The settings field that bounds the command (None when read-only)."""
        key = self.command_key
        return None if self.settable is None or key is None else field_spec(self.settable, key)


_READS = re.compile(r"value_json\.(\w+)")
_MEASUREMENT, _TOTAL = "measurement", "total_increasing"
_DIAGNOSTIC, _CONFIG = "diagnostic", "config"


def _angle(component: str, name: str, key: str, icon: str) -> Expose:
    return Expose(component, "sensor", name, key, icon=icon, unit="°", state_class=_MEASUREMENT,
                  precision=1, link=True, expires=True)


def _minutes(component: str, name: str, key: str, topic: str, state_class: str,
              icon: str | None = None, link: bool = False, needs: str | None = None) -> Expose:
    return Expose(component, "sensor", name, key, topic, icon=icon, device_class="duration",
                  unit="min", precision=0, state_class=state_class, link=link, needs=needs)


def _counter(component: str, name: str, key: str, icon: str, enabled: bool = False,
             attributes: str | None = None, state_class: str = _TOTAL) -> Expose:
    """A diagnostic count of the state (the pipeline and gateway counters)."""
    return Expose(component, "sensor", name, key, icon=icon, state_class=state_class,
                  entity_category=_DIAGNOSTIC, enabled=enabled, attributes=attributes)


EXPOSES: tuple[Expose, ...] = (
    _angle("flexion", "Flexion", "flexion_deg", "mdi:human-handsdown"),
    _angle("lateral", "Sideways lean", "lateral_deg", "mdi:angle-acute"),
    Expose("posture", "sensor", "Posture", "posture", icon="mdi:human", device_class="enum",
           options=tuple(p.value for p in Posture), link=True, expires=True),
    Expose("slouching", "binary_sensor", "Slouching", "posture", on_value=Posture.SLOUCHING.value,
           device_class="problem", link=True, expires=True),
    Expose("activity", "sensor", "Activity", "activity", icon="mdi:walk", device_class="enum",
           options=tuple(a.value for a in Activity), link=True, expires=True),
    _minutes("sitting", "Sitting time", "sitting_min", STATE, _MEASUREMENT,
             icon="mdi:seat-recline-normal", link=True),
    Expose("alert", "event", "Alert", "event_type", EVENT, icon="mdi:bell-alert",
           options=tuple(k.value for k in EventKind)),
    Expose("upright_today", "sensor", "Upright today", "upright_pct", STATS,
           icon="mdi:human-male-height", unit="%", state_class=_MEASUREMENT, precision=0),
    _minutes("slouched_today", "Slouched today", "slouched_min", STATS, _TOTAL),
    _minutes("sitting_today", "Sitting today", "sitting_min", STATS, _TOTAL),
    Expose("alerts_today", "sensor", "Alerts today", "alerts", STATS, icon="mdi:bell-ring",
           state_class=_TOTAL),
    Expose("calibrate", "button", "Calibrate upright", settable=Actions, command="calibrate",
           icon="mdi:target", entity_category=_CONFIG, link=True),
    Expose("use_file_settings", "button", "Use config file settings", settable=Actions,
           command="use_file_settings", icon="mdi:file-restore", entity_category=_CONFIG, link=True),
    Expose("threshold", "number", "Slouch threshold", "threshold_deg", settable=DetectionSettings,
           unit="°", step=0.5, entity_category=_CONFIG),
    Expose("dwell", "number", "Slouch dwell", "dwell_s", settable=DetectionSettings, unit="s",
           step=1, entity_category=_CONFIG),
    Expose("snooze", "number", "Snooze", "snooze_min", settable=Actions, unit="min", step=5),
    Expose("alerts", "switch", "Alerts", "alerts_enabled", settable=DetectionSettings,
           icon="mdi:bell"),
    Expose("mode", "select", "Mode", "mode", settable=DetectionSettings, icon="mdi:school",
           entity_category=_CONFIG),
    Expose("battery", "sensor", "Battery", "battery", device_class="battery", unit="%",
           state_class=_MEASUREMENT, entity_category=_DIAGNOSTIC, link=True, needs=BATTERY),
    Expose("rssi", "sensor", "Signal", "rssi", device_class="signal_strength", unit="dBm",
           state_class=_MEASUREMENT, entity_category=_DIAGNOSTIC, link=True, enabled=False,
           needs=RSSI),
    _counter("reconnects", "Sensor reconnects", "reconnects", "mdi:bluetooth-connect", enabled=True),
    _counter("packets", "Packets received", "packets", "mdi:package-variant"),
    # The count, with the reasons (short, garbage, duplicate, haptic ...) as its attributes.
    _counter("packets_dropped", "Packets dropped", "dropped", "mdi:package-variant-remove",
             attributes="dropped_by_reason"),
    _counter("task_restarts", "Sensor task restarts", "task_restarts", "mdi:restart-alert"),
    # What the gateway refused or dropped from outside (commands, oversized payloads, sd_notify
    # messages): the total as the state, each counter as an attribute.
    _counter("gateway_drops", "Gateway refusals and drops", "gateway_drops", "mdi:shield-alert",
             attributes="gateway"),
    _counter("mqtt_queue", "MQTT queue", "mqtt_queue", "mdi:tray-full", state_class=_MEASUREMENT),
    # The coach (docs/coach.md): guided stretches, breaks that count, goal, streak, plan, history.
    Expose("start_stretches", "button", "Start stretches", settable=Actions, command="stretch",
           press="start", icon="mdi:human-handsup"),
    Expose("stop_stretches", "button", "Stop stretches", settable=Actions, command="stretch",
           press="stop", icon="mdi:stop-circle-outline"),
    Expose("stretch_status", "sensor", "Stretch session", "stretch", icon="mdi:yoga",
           device_class="enum", options=STRETCH_STATUSES),
    Expose("stretch_step", "sensor", "Stretch step", "title", STRETCH, icon="mdi:human-handsup",
           template="{{ value_json.title | default(value_json.status) }}",
           attributes_template="{{ value_json | tojson }}"),
    Expose("stretch_held", "sensor", "Stretch hold", "held_s", STRETCH, icon="mdi:timer-sand",
           unit="s", state_class=_MEASUREMENT, precision=0,
           template="{{ value_json.held_s | default(0) }}"),
    Expose("breaks_today", "sensor", "Breaks today", "breaks_today", icon="mdi:coffee-outline",
           unit="breaks", state_class=_TOTAL),
    Expose("stretch_sessions_today", "sensor", "Stretch sessions today", "stretch_sessions_today",
           icon="mdi:yoga", unit="sessions", state_class=_TOTAL),
    Expose("goal_met_today", "binary_sensor", "Goal met today", "goal_met", icon="mdi:trophy-outline"),
    Expose("streak", "sensor", "Goal streak", "streak_days", icon="mdi:fire", unit="d",
           state_class=_MEASUREMENT),
    Expose("best_streak", "sensor", "Best goal streak", "best_streak_days", icon="mdi:medal-outline",
           unit="d", state_class=_MEASUREMENT),
    Expose("plan_day", "sensor", "Training plan day", "plan_day", icon="mdi:calendar-check",
           state_class=_MEASUREMENT, needs=PLAN, attributes_template=(
               "{{ {'plan_days': value_json.plan_days, 'training_min_today': "
               "value_json.training_min_today} | tojson }}")),
    _minutes("training_today", "Training today", "training_done_min", STATE, _MEASUREMENT,
             icon="mdi:school-outline", needs=PLAN),
    # The week's upright share as the state (long-term statistics), the last 31 days as
    # attributes (Home Assistant stores no attributes over 16 kB; 90 days would come close).
    Expose("history", "sensor", "Upright share this week", "week_upright_pct", HISTORY,
           icon="mdi:chart-bar", unit="%", state_class=_MEASUREMENT, precision=0,
           attributes_template="{{ {'days': value_json.days[-31:]} | tojson }}"),
    Expose("worn", "binary_sensor", "Worn", "worn", icon="mdi:tshirt-crew",
           entity_category=_DIAGNOSTIC, link=True),
    Expose("calibrated", "binary_sensor", "Calibrated", "calibrated", icon="mdi:target-account",
           entity_category=_DIAGNOSTIC, link=True),
)

COMMANDS: dict[str, FieldSpec] = {
    key: spec for e in EXPOSES if (key := e.command_key) is not None and (spec := e.spec) is not None}
"""Command key -> the settings field that types and bounds it, in table order."""

SETTING_KEYS: tuple[str, ...] = tuple(
    k for e in EXPOSES if e.settable is DetectionSettings and (k := e.command_key) is not None)
"""Command keys that change DetectionSettings (the others are actions: calibrate, snooze...)."""


def read_keys(topic: str) -> dict[str, list[str]]:
    """The JSON keys Home Assistant reads from ``topic`` (``STATE``, ``STATS``, ``EVENT``, ...):
    key -> the components that read it (value or attributes), every capability included."""
    out: dict[str, list[str]] = {}
    for e in EXPOSES:
        if e.topic != topic:
            continue
        for key in e.reads:
            out.setdefault(key, []).append(e.component)
    return out
