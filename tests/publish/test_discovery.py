"""Home Assistant device discovery payloads: required keys, ids, topics, bounds."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from slouchd.model import Activity, EventKind, Posture
from slouchd.posture.settings import DetectionSettings
from slouchd.publish.homeassistant import device_id, discovery_payload, discovery_topic
from slouchd.publish.topics import Topics
from slouchd.publish.wearer import WearerInfo, stable_sensor_id

TOPICS = Topics("slouchd")
ALICE = WearerInfo("alice", stable_sensor_id("C4:AA:10:2B:33:01", "alice"),
                   model="micro:bit v2", manufacturer="BBC", profile="microbit")
# HA's discovery topic matcher (homeassistant/components/mqtt/discovery.py, TOPIC_MATCHER).
HA_TOPIC = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")
PLATFORMS = {"sensor", "binary_sensor", "event", "button", "number", "switch", "select"}


def payload(info: WearerInfo = ALICE) -> dict:
    # Through JSON, exactly as Home Assistant will see it.
    return json.loads(json.dumps(discovery_payload(info, TOPICS, 120, "1.2.3")))


def test_sensor_ids_are_stable_and_hardware_derived() -> None:
    assert stable_sensor_id("C4:AA:10:2B:33:01", "alice") == "c4aa102b3301"
    assert stable_sensor_id("c4-aa-10-2b-33-01", "bob") == "c4aa102b3301"  # the name does not matter
    assert stable_sensor_id("simulated", "demo") == "sim-demo"
    assert stable_sensor_id("replay:/data/day1.csv", "demo") == "replay-demo"
    assert stable_sensor_id("BBC micro:bit [zogav]", "x") == "bbc-micro-bit-zogav"


def test_discovery_topic_is_device_based_and_valid_for_ha() -> None:
    topic = discovery_topic("homeassistant", ALICE)
    assert topic == "homeassistant/device/slouchd_c4aa102b3301/config"
    m = HA_TOPIC.fullmatch(topic.removeprefix("homeassistant/"))
    assert m and m["component"] == "device" and m["object_id"] == device_id(ALICE)


def test_device_and_origin_blocks() -> None:
    p = payload()
    assert p["origin"] == {"name": "slouchd", "sw_version": "1.2.3"}
    dev = p["device"]
    assert dev["identifiers"] == ["slouchd_c4aa102b3301"]
    assert dev["name"] == "slouchd alice"
    assert (dev["manufacturer"], dev["model"], dev["hw_version"]) == ("BBC", "micro:bit v2", "microbit")
    assert dev["serial_number"] == "c4aa102b3301"
    assert p["qos"] == 1


def test_every_component_has_the_keys_its_platform_requires() -> None:
    comps = payload()["components"]
    for cid, c in comps.items():
        assert re.fullmatch(r"[a-z_]+", cid)
        assert c["platform"] in PLATFORMS, cid
        assert c["unique_id"] == f"slouchd_c4aa102b3301_{cid}"
        assert c["name"]
        assert c["availability_mode"] == "all"
        avail = [a["topic"] for a in c["availability"]]
        assert avail[0] == "slouchd/bridge/state"
        assert all(a["payload_available"] == "online" and a["payload_not_available"] == "offline"
                   for a in c["availability"])
        if c["platform"] in ("sensor", "binary_sensor", "event", "number", "switch", "select"):
            assert c["state_topic"].startswith("slouchd/alice/"), cid
        if c["platform"] in ("button", "number", "switch", "select"):
            assert c["command_topic"].startswith("slouchd/alice/set/"), cid
            assert c.get("entity_category") in (None, "config")
        if c["platform"] == "sensor":
            assert c.get("entity_category") in (None, "diagnostic")  # HA: sensors may not be "config"
        if c["platform"] == "event":
            assert c["event_types"]
    uids = [c["unique_id"] for c in comps.values()]
    assert len(set(uids)) == len(uids)


def test_entities_the_issue_asks_for() -> None:
    c = payload()["components"]
    angle = c["flexion"]
    assert angle["unit_of_measurement"] == "°" and angle["state_class"] == "measurement"
    assert angle["expire_after"] == 120
    assert angle["value_template"] == "{{ value_json.flexion_deg | default(none) }}"
    assert c["posture"]["device_class"] == "enum"
    assert c["posture"]["options"] == [p.value for p in Posture]
    assert c["activity"]["options"] == [a.value for a in Activity]
    assert c["slouching"]["platform"] == "binary_sensor" and c["slouching"]["device_class"] == "problem"
    assert "expire_after" in c["slouching"] and "expire_after" in c["posture"]
    assert c["sitting"]["value_template"] == "{{ value_json.sitting_min | default(none) }}"
    for key, field in (("upright_today", "upright_pct"), ("slouched_today", "slouched_min"),
                       ("alerts_today", "alerts"), ("sitting_today", "sitting_min")):
        assert c[key]["state_topic"] == "slouchd/alice/stats"
        assert field in c[key]["value_template"]
    assert c["alert"]["platform"] == "event" and c["alert"]["state_topic"] == "slouchd/alice/event"
    assert set(c["alert"]["event_types"]) == {k.value for k in EventKind}
    assert c["calibrate"]["platform"] == "button" and c["calibrate"]["payload_press"] == "true"
    assert c["alerts"]["platform"] == "switch"
    assert (c["alerts"]["payload_on"], c["alerts"]["payload_off"]) == ("true", "false")
    assert c["mode"]["platform"] == "select" and c["mode"]["options"] == ["training", "tracking"]
    assert c["snooze"]["platform"] == "number" and c["snooze"]["min"] == 0
    for diag in ("battery", "rssi", "reconnects"):
        assert c[diag]["entity_category"] == "diagnostic"
    assert c["battery"]["device_class"] == "battery" and c["rssi"]["device_class"] == "signal_strength"


def test_numbers_are_bounded_by_the_settings_metadata() -> None:
    meta = {f.name: f.metadata for f in dataclasses.fields(DetectionSettings)}
    c = payload()["components"]
    for comp, key in (("threshold", "threshold_deg"), ("dwell", "dwell_s")):
        assert (c[comp]["min"], c[comp]["max"]) == (meta[key]["min"], meta[key]["max"])
        assert c[comp]["command_topic"] == f"slouchd/alice/set/{key}"
        assert c[comp]["value_template"] == f"{{{{ value_json.{key} | default(none) }}}}"


def test_sensor_entities_need_the_sensor_link_settings_do_not() -> None:
    c = payload()["components"]
    two = ["slouchd/bridge/state", "slouchd/alice/availability"]
    for cid in ("flexion", "posture", "slouching", "battery", "calibrate"):
        assert [a["topic"] for a in c[cid]["availability"]] == two, cid
    for cid in ("threshold", "mode", "alerts", "upright_today", "alert"):
        assert [a["topic"] for a in c[cid]["availability"]] == two[:1], cid


def test_payload_is_identical_across_restarts_and_renames_keep_ids() -> None:
    assert payload() == payload()  # no random or time-dependent field
    renamed = dataclasses.replace(ALICE, name="alice2")
    a, b = payload()["components"], payload(renamed)["components"]
    assert [x["unique_id"] for x in a.values()] == [x["unique_id"] for x in b.values()]
    assert discovery_topic("homeassistant", renamed) == discovery_topic("homeassistant", ALICE)


def test_two_wearers_never_share_a_unique_id() -> None:
    bob = WearerInfo("bob", stable_sensor_id("simulated", "bob"))
    ids_a = {c["unique_id"] for c in payload()["components"].values()}
    ids_b = {c["unique_id"] for c in payload(bob)["components"].values()}
    assert not ids_a & ids_b


@pytest.mark.parametrize("base", ["slouchd", "home/posture"])
def test_topics_follow_the_base_topic(base: str) -> None:
    p = json.loads(json.dumps(discovery_payload(ALICE, Topics(base), 60)))
    for c in p["components"].values():
        for key in ("state_topic", "command_topic"):
            if key in c:
                assert c[key].startswith(f"{base}/alice/")


def test_leftover_discovery_is_recognised_only_when_it_is_ours() -> None:
    from slouchd.publish.homeassistant import leftover_wearer

    bob = WearerInfo("bob", "sim-bob")
    topic = discovery_topic("homeassistant", bob)
    ours = json.dumps(discovery_payload(bob, TOPICS, 120)).encode()
    current = {device_id(ALICE)}
    assert leftover_wearer(topic, ours, "homeassistant", TOPICS, current) == "bob"
    # Still configured (e.g. renamed, same sensor): not a leftover.
    assert leftover_wearer(topic, ours, "homeassistant", TOPICS, current | {device_id(bob)}) is None
    # Another slouchd instance with its own base topic: not ours to clear.
    assert leftover_wearer(topic, ours, "homeassistant", Topics("upstairs"), current) is None
    # Someone else's device, an already cleared topic, junk: left alone.
    other = json.loads(ours)
    other["origin"]["name"] = "zigbee2mqtt"
    assert leftover_wearer(topic, json.dumps(other).encode(), "homeassistant", TOPICS, current) is None
    assert leftover_wearer(topic, b"", "homeassistant", TOPICS, current) is None
    assert leftover_wearer(topic, b"\xff{not json", "homeassistant", TOPICS, current) is None
    assert leftover_wearer(topic, b"[1, 2]", "homeassistant", TOPICS, current) is None
    assert leftover_wearer("homeassistant/sensor/x/config", ours, "homeassistant", TOPICS, current) is None


GOLDEN = Path(__file__).parent / "golden" / "discovery_alice.json"


def test_discovery_matches_the_reviewed_golden_file() -> None:
    """Any change to what HA receives shows up here as a diff to review (then update the file:
    it is ``discovery_payload(ALICE, Topics("slouchd"), 120, "0.0.0-test")`` as indented JSON)."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    made = discovery_payload(ALICE, TOPICS, 120, "0.0.0-test")
    assert json.loads(json.dumps(made)) == golden
    # Byte for byte but for the order of keys inside a component (made from the exposes table
    # in one order, not the order of the reviewed literal): 0.0 stays 0.0, not 0.
    assert canonical(made) == canonical(golden)


def canonical(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=2)


def test_a_leftover_with_removed_components_is_still_recognised() -> None:
    """A wearer without battery sends {"platform": "sensor"} for it; that is still ours."""
    from slouchd.publish.homeassistant import leftover_wearer

    bob = WearerInfo("bob", "sim-bob", capabilities=frozenset())
    ours = json.dumps(discovery_payload(bob, TOPICS, 120)).encode()
    assert json.loads(ours)["components"]["battery"] == {"platform": "sensor"}
    topic = discovery_topic("homeassistant", bob)
    assert leftover_wearer(topic, ours, "homeassistant", TOPICS, {device_id(ALICE)}) == "bob"
