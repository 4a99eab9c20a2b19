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

The entities come from one table, :data:`slouchd.publish.exposes.EXPOSES`; an entity whose
capability the wearer's sensor lacks (a battery on the simulated wearer) is sent as a removal.

Facts: https://www.home-assistant.io/integrations/mqtt/ (device discovery, availability) and the
platform pages sensor.mqtt, binary_sensor.mqtt, event.mqtt, number.mqtt, select.mqtt, switch.mqtt,
button.mqtt; summed up, with how a component is removed, in docs/homeassistant.md.
"""

from __future__ import annotations

import json
from typing import Any

from slouchd import __version__
from slouchd.publish.exposes import COMMANDS, EVENT, EXPOSES, HISTORY, STATE, STATS, STRETCH, Expose
from slouchd.publish.topics import OFFLINE, ONLINE, Topics
from slouchd.publish.wearer import WearerInfo

ORIGIN_NAME = "slouchd"
ID_PREFIX = "slouchd"


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


def _field(key: str) -> str:
    """A value template reading one JSON field; a missing or null field renders "None", which
    Home Assistant shows as unknown (instead of logging a template error on every message)."""
    return f"{{{{ value_json.{key} | default(none) }}}}"


def _value_template(row: Expose) -> str:
    """How ``row`` reads its key: binary sensors and switches map it to their payloads."""
    key = row.key
    if row.platform == "binary_sensor":
        test = f"value_json.{key}" if row.on_value is None else f"value_json.{key} == '{row.on_value}'"
        return f"{{{{ 'ON' if {test} else 'OFF' }}}}"
    if row.platform == "switch":
        # payload_on/off are JSON, so …/set/alerts_enabled gets a JSON boolean like every command.
        return f"{{{{ '{_TRUE}' if value_json.{key} else '{_FALSE}' }}}}"
    return _field(str(key))


_TRUE, _FALSE = "true", "false"
_PRESS = "true"  # a button sends a JSON true, like {"calibrate": true}


def _topic(row: Expose, topics: Topics, wearer: str) -> str:
    if row.topic in (STRETCH, HISTORY):  # the coach's retained topics (MqttPublisher.publish_retained)
        return f"{topics.base}/{wearer}/{row.topic}"
    return {STATE: topics.state, STATS: topics.stats, EVENT: topics.event}[row.topic](wearer)


def _reads(row: Expose, topics: Topics, wearer: str) -> dict[str, Any]:
    """The options that say what the entity reads (state, attributes, event types)."""
    if row.platform == "button":
        return {}
    state_t = _topic(row, topics, wearer)
    if row.platform == "event":
        return {"state_topic": state_t, "event_types": list(row.options or ())}
    out: dict[str, Any] = {"state_topic": state_t, "value_template": row.template or _value_template(row)}
    if row.attributes is not None:
        out["json_attributes_topic"] = state_t
        out["json_attributes_template"] = f"{{{{ value_json.{row.attributes} | tojson }}}}"
    elif row.attributes_template is not None:
        out["json_attributes_topic"] = state_t
        out["json_attributes_template"] = row.attributes_template
    return out


def _command(row: Expose, topics: Topics, wearer: str) -> dict[str, Any]:
    """The options of a settable entity: where it sends and what it may send."""
    key = row.command_key
    if key is None:
        return {}
    spec = COMMANDS[key]  # the same entry the command parser checks against
    out: dict[str, Any] = {"command_topic": topics.command(wearer, key)}
    if row.platform == "button":
        out["payload_press"] = row.press or _PRESS
    elif row.platform == "switch":
        out.update(payload_on=_TRUE, payload_off=_FALSE)
    elif row.platform == "select":
        out["options"] = list(spec.choices or ())
    elif row.platform == "number":
        out.update(min=spec.lo, max=spec.hi, step=row.step, mode="box")
    return out


# Options taken as they are from the row, in this order in the message.
_PLAIN = (("icon", "icon"), ("device_class", "device_class"), ("unit_of_measurement", "unit"),
          ("state_class", "state_class"), ("suggested_display_precision", "precision"),
          ("entity_category", "entity_category"))


def component(row: Expose, info: WearerInfo, topics: Topics, expire_after_s: int) -> dict[str, Any]:
    """One entity of the discovery message (see :func:`discovery_payload`)."""
    w = info.name
    comp: dict[str, Any] = {"platform": row.platform, "unique_id": f"{device_id(info)}_{row.component}",
                            "name": row.name}
    comp.update((ha, getattr(row, attr)) for ha, attr in _PLAIN if getattr(row, attr) is not None)
    if row.platform == "sensor" and row.options is not None:
        comp["options"] = list(row.options)
    comp.update(_command(row, topics, w))
    comp.update(_reads(row, topics, w))
    if not row.enabled:
        comp["enabled_by_default"] = False
    if row.expires:
        comp["expire_after"] = expire_after_s
    bridge = {"topic": topics.bridge_state, "payload_available": ONLINE,
              "payload_not_available": OFFLINE}
    link = {"topic": topics.availability(w), "payload_available": ONLINE,
            "payload_not_available": OFFLINE}
    comp["availability"] = [bridge, link] if row.link else [bridge]
    comp["availability_mode"] = "all"
    return comp


def discovery_payload(info: WearerInfo, topics: Topics, expire_after_s: int,
                      version: str = __version__) -> dict[str, Any]:
    """The device discovery JSON for one wearer (see the module docstring), made from
    :data:`slouchd.publish.exposes.EXPOSES`.

    A row whose capability the wearer's sensor lacks is sent as ``{"platform": ...}`` alone:
    Home Assistant removes that entity if an earlier discovery created it, and creates nothing
    otherwise (docs/homeassistant.md, "Capabilities").
    """
    components: dict[str, dict[str, Any]] = {}
    for row in EXPOSES:
        if row.needs is not None and row.needs not in info.capabilities:
            components[row.component] = {"platform": row.platform}
        else:
            components[row.component] = component(row, info, topics, expire_after_s)
    device: dict[str, Any] = {
        "identifiers": [device_id(info)],
        "name": f"slouchd {info.name}",
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
