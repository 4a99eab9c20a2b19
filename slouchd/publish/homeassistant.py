"""Home Assistant MQTT device discovery: one retained JSON per wearer, every entity in it.

Topic ``<prefix>/device/slouchd_<sensor_id>/config`` (device-based discovery, HA 2024.11+), with
the mandatory ``device`` and ``origin`` blocks and ``components`` keyed by a stable component id.
Full key names are used rather than HA's abbreviations, for readability.

Unique ids are ``slouchd_<sensor_id>_<component>``: they derive from the sensor's address, never
from the wearer's name, the host or the config order, so they survive restarts, renames and a move
to another gateway. Availability is two topics with ``availability_mode: all``: the bridge's last
will (is slouchd running and connected?) and, for entities that come from the sensor, the wearer's
sensor-link topic (is the sensor in range and streaming?). Settings, daily totals and the event
entity only need the bridge: they stay meaningful while the sensor is away.

Facts: https://www.home-assistant.io/integrations/mqtt/ (device discovery, availability) and the
platform pages sensor.mqtt, binary_sensor.mqtt, event.mqtt, number.mqtt, select.mqtt, switch.mqtt,
button.mqtt; ../shared/research/reliability-ecosystem.md section 3.
"""

from __future__ import annotations

import json
from typing import Any

from slouchd import __version__
from slouchd.model import Activity, EventKind, Posture
from slouchd.publish.commands import SPECS
from slouchd.publish.topics import OFFLINE, ONLINE, Topics
from slouchd.publish.wearer import WearerInfo

ORIGIN_NAME = "slouchd"
ID_PREFIX = "slouchd"


def _field(key: str) -> str:
    """A value template reading one JSON field; a missing or null field renders "None", which
    Home Assistant shows as unknown (instead of logging a template error on every message)."""
    return f"{{{{ value_json.{key} | default(none) }}}}"


def device_id(info: WearerInfo) -> str:
    """The discovery object id and device identifier, e.g. ``slouchd_c4aa102b3301``."""
    return f"{ID_PREFIX}_{info.sensor_id}"


def discovery_topic(prefix: str, info: WearerInfo) -> str:
    return f"{prefix}/device/{device_id(info)}/config"


def discovery_filter(prefix: str) -> str:
    """Subscription matching every device discovery topic (to find our own leftovers)."""
    return f"{prefix}/device/+/config"


# Discovery messages bigger than this are not ours (ours are about 8 KiB) and are not parsed.
MAX_DISCOVERY_BYTES = 64 * 1024


def leftover_wearer(topic: str, payload: bytes, prefix: str, topics: Topics,
                    current: set[str]) -> str | None:
    """The wearer name of a retained slouchd discovery that no configured wearer owns any more.

    Such leftovers come from wearers removed from the config while slouchd was not running; left
    alone, HA would keep their entities forever. A discovery counts as ours only when its origin
    is slouchd *and* its state topics live under our base topic, so another slouchd instance
    with its own base topic is never touched.

    Args:
        topic: the discovery topic (``<prefix>/device/<device id>/config``).
        payload: its retained payload.
        prefix: the discovery prefix.
        topics: our topic layout.
        current: the device ids of the wearers configured now.

    Returns:
        The old wearer's name ("" if it cannot be told), or None when it is not a leftover.
    """
    head, tail = f"{prefix}/device/", "/config"
    if not (topic.startswith(head) and topic.endswith(tail)) or not payload:
        return None
    if topic[len(head):-len(tail)] in current or len(payload) > MAX_DISCOVERY_BYTES:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    origin = data.get("origin", data.get("o"))
    comps = data.get("components", data.get("cmps"))
    if not isinstance(origin, dict) or origin.get("name") != ORIGIN_NAME or not isinstance(comps, dict):
        return None
    names = set()
    for comp in comps.values():
        state = comp.get("state_topic") if isinstance(comp, dict) else None
        if not isinstance(state, str):
            continue
        parts = state.split("/")
        if state.startswith(topics.base + "/") and len(parts) == len(topics.base.split("/")) + 2:
            names.add(parts[-2])
        else:
            return None  # a topic outside our base: someone else's
    if len(names) > 1:
        return None
    return names.pop() if names else ""


def status_topic(prefix: str, configured: str = "") -> str:
    """Where HA publishes ``online``/``offline`` about itself (its birth and last will)."""
    return configured or f"{prefix}/status"


def discovery_payload(info: WearerInfo, topics: Topics, expire_after_s: int,
                      version: str = __version__) -> dict[str, Any]:
    """The device discovery JSON for one wearer (see the module docstring)."""
    w = info.name
    dev_id = device_id(info)
    bridge = {"topic": topics.bridge_state, "payload_available": ONLINE,
              "payload_not_available": OFFLINE}
    link = {"topic": topics.availability(w), "payload_available": ONLINE,
            "payload_not_available": OFFLINE}
    sensor_link = {"availability": [bridge, link], "availability_mode": "all"}
    bridge_only = {"availability": [bridge], "availability_mode": "all"}
    state_t, stats_t = topics.state(w), topics.stats(w)
    expires = {"expire_after": expire_after_s}
    angle = {"unit_of_measurement": "°", "state_class": "measurement",
             "suggested_display_precision": 1}
    minutes = {"device_class": "duration", "unit_of_measurement": "min",
               "suggested_display_precision": 0}
    diagnostic = {"entity_category": "diagnostic"}

    def entity(platform: str, cid: str, name: str, avail: dict[str, Any],
               **options: Any) -> dict[str, Any]:
        return {"platform": platform, "unique_id": f"{dev_id}_{cid}", "name": name,
                **options, **avail}

    def reads(topic: str, template: str) -> dict[str, Any]:
        return {"state_topic": topic, "value_template": template}

    def number(cid: str, key: str, name: str, unit: str, step: float,
               **options: Any) -> dict[str, Any]:
        spec = SPECS[key]
        return entity("number", cid, name, bridge_only, command_topic=topics.command(w, key),
                      **reads(state_t, _field(key)), min=spec.lo, max=spec.hi, step=step,
                      mode="box", unit_of_measurement=unit, **options)

    components: dict[str, dict[str, Any]] = {
        "flexion": entity("sensor", "flexion", "Flexion", sensor_link, icon="mdi:human-handsdown",
                          **reads(state_t, _field("flexion_deg")), **angle, **expires),
        "lateral": entity("sensor", "lateral", "Sideways lean", sensor_link, icon="mdi:angle-acute",
                          **reads(state_t, _field("lateral_deg")), **angle, **expires),
        "posture": entity("sensor", "posture", "Posture", sensor_link, icon="mdi:human",
                          device_class="enum", options=[p.value for p in Posture],
                          **reads(state_t, _field("posture")), **expires),
        "slouching": entity("binary_sensor", "slouching", "Slouching", sensor_link,
                            device_class="problem", **reads(
                                state_t, "{{ 'ON' if value_json.posture == 'slouching' else 'OFF' }}"),
                            **expires),
        "activity": entity("sensor", "activity", "Activity", sensor_link, icon="mdi:walk",
                           device_class="enum", options=[a.value for a in Activity],
                           **reads(state_t, _field("activity")), **expires),
        "sitting": entity("sensor", "sitting", "Sitting time", sensor_link,
                          icon="mdi:seat-recline-normal", **minutes, state_class="measurement",
                          **reads(state_t, _field("sitting_min"))),
        "alert": entity("event", "alert", "Alert", bridge_only, icon="mdi:bell-alert",
                        state_topic=topics.event(w), event_types=[k.value for k in EventKind]),
        "upright_today": entity("sensor", "upright_today", "Upright today", bridge_only,
                                icon="mdi:human-male-height", unit_of_measurement="%",
                                state_class="measurement", suggested_display_precision=0,
                                **reads(stats_t, _field("upright_pct"))),
        "slouched_today": entity("sensor", "slouched_today", "Slouched today", bridge_only,
                                 **minutes, state_class="total_increasing",
                                 **reads(stats_t, _field("slouched_min"))),
        "sitting_today": entity("sensor", "sitting_today", "Sitting today", bridge_only,
                                **minutes, state_class="total_increasing",
                                **reads(stats_t, _field("sitting_min"))),
        "alerts_today": entity("sensor", "alerts_today", "Alerts today", bridge_only,
                               icon="mdi:bell-ring", state_class="total_increasing",
                               **reads(stats_t, _field("alerts"))),
        "calibrate": entity("button", "calibrate", "Calibrate upright", sensor_link,
                            icon="mdi:target", command_topic=topics.command(w, "calibrate"),
                            payload_press="true", entity_category="config"),
        "use_file_settings": entity("button", "use_file_settings", "Use config file settings",
                                    sensor_link, icon="mdi:file-restore",
                                    command_topic=topics.command(w, "use_file_settings"),
                                    payload_press="true", entity_category="config"),
        "threshold": number("threshold", "threshold_deg", "Slouch threshold", "°", 0.5,
                            entity_category="config"),
        "dwell": number("dwell", "dwell_s", "Slouch dwell", "s", 1, entity_category="config"),
        "snooze": number("snooze", "snooze_min", "Snooze", "min", 5),
        # payload_on/off are JSON, so …/set/alerts_enabled gets a JSON boolean like every command.
        "alerts": entity("switch", "alerts", "Alerts", bridge_only, icon="mdi:bell",
                         command_topic=topics.command(w, "alerts_enabled"),
                         payload_on="true", payload_off="false", **reads(
                             state_t, "{{ 'true' if value_json.alerts_enabled else 'false' }}")),
        "mode": entity("select", "mode", "Mode", bridge_only, icon="mdi:school",
                       command_topic=topics.command(w, "mode"),
                       options=list(SPECS["mode"].choices or ()), **reads(state_t, _field("mode")),
                       entity_category="config"),
        "battery": entity("sensor", "battery", "Battery", sensor_link, device_class="battery",
                          unit_of_measurement="%", state_class="measurement", **diagnostic,
                          **reads(state_t, _field("battery"))),
        "rssi": entity("sensor", "rssi", "Signal", sensor_link, device_class="signal_strength",
                       unit_of_measurement="dBm", state_class="measurement", **diagnostic,
                       enabled_by_default=False, **reads(state_t, _field("rssi"))),
        "reconnects": entity("sensor", "reconnects", "Sensor reconnects", bridge_only,
                             icon="mdi:bluetooth-connect", state_class="total_increasing",
                             **diagnostic, **reads(state_t, _field("reconnects"))),
        "packets": entity("sensor", "packets", "Packets received", bridge_only,
                          icon="mdi:package-variant", state_class="total_increasing",
                          **diagnostic, enabled_by_default=False, **reads(state_t, _field("packets"))),
        # The count, with the reasons (short, garbage, duplicate, haptic ...) as its attributes.
        "packets_dropped": entity("sensor", "packets_dropped", "Packets dropped", bridge_only,
                                  icon="mdi:package-variant-remove", state_class="total_increasing",
                                  **diagnostic, enabled_by_default=False,
                                  json_attributes_topic=state_t,
                                  json_attributes_template="{{ value_json.dropped_by_reason | tojson }}",
                                  **reads(state_t, _field("dropped"))),
        "task_restarts": entity("sensor", "task_restarts", "Sensor task restarts", bridge_only,
                                icon="mdi:restart-alert", state_class="total_increasing",
                                **diagnostic, enabled_by_default=False,
                                **reads(state_t, _field("task_restarts"))),
        # What the gateway refused or dropped from outside (commands, oversized payloads, sd_notify
        # messages): the total as the state, each counter as an attribute.
        "gateway_drops": entity("sensor", "gateway_drops", "Gateway refusals and drops", bridge_only,
                                icon="mdi:shield-alert", state_class="total_increasing",
                                **diagnostic, enabled_by_default=False,
                                json_attributes_topic=state_t,
                                json_attributes_template="{{ value_json.gateway | tojson }}",
                                **reads(state_t, _field("gateway_drops"))),
        "mqtt_queue": entity("sensor", "mqtt_queue", "MQTT queue", bridge_only,
                             icon="mdi:tray-full", state_class="measurement", **diagnostic,
                             enabled_by_default=False, **reads(state_t, _field("mqtt_queue"))),
        "worn": entity("binary_sensor", "worn", "Worn", sensor_link, icon="mdi:tshirt-crew",
                       **diagnostic, **reads(state_t, "{{ 'ON' if value_json.worn else 'OFF' }}")),
        "calibrated": entity("binary_sensor", "calibrated", "Calibrated", sensor_link,
                             icon="mdi:target-account", **diagnostic,
                             **reads(state_t, "{{ 'ON' if value_json.calibrated else 'OFF' }}")),
    }
    device: dict[str, Any] = {
        "identifiers": [dev_id],
        "name": f"slouchd {w}",
        "manufacturer": info.manufacturer or "slouchd",
        "model": info.model or ("Simulated wearer" if info.sensor_id.startswith("sim-") else
                                "Back posture sensor"),
        "serial_number": info.sensor_id,
    }
    if info.profile:
        device["hw_version"] = info.profile
    if info.sw_version:
        device["sw_version"] = info.sw_version
    return {
        "device": device,
        "origin": {"name": ORIGIN_NAME, "sw_version": version},
        "qos": 1,
        "components": components,
    }
