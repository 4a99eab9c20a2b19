"""The exposes table: one row per Home Assistant entity, the source of discovery and commands."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from slouchd.posture.settings import DetectionSettings
from slouchd.publish.commands import COMMAND_KEYS, SETTING_KEYS, CommandRefused, parse_command
from slouchd.publish.exposes import (
    COMMANDS,
    EVENT,
    EXPOSES,
    HISTORY,
    STATE,
    STATS,
    STRETCH,
    Actions,
    read_keys,
)
from slouchd.publish.homeassistant import discovery_payload
from slouchd.publish.topics import Topics
from slouchd.publish.wearer import (
    ALL_CAPABILITIES,
    BATTERY,
    PLAN,
    RSSI,
    WearerInfo,
    battery_can_exist,
    sensor_capabilities,
    stable_sensor_id,
)
from slouchd.sensors.profiles import load_profile

REPO = Path(__file__).resolve().parents[2]
TOPICS = Topics("slouchd")
PLATFORMS = {"sensor", "binary_sensor", "event", "button", "number", "switch", "select"}
SETTABLE = {"button", "number", "switch", "select"}


def payload(info: WearerInfo) -> dict:
    return json.loads(json.dumps(discovery_payload(info, TOPICS, 120, "1.2.3")))


def test_rows_are_well_formed() -> None:
    ids = [e.component for e in EXPOSES]
    assert len(set(ids)) == len(ids)
    for e in EXPOSES:
        assert re.fullmatch(r"[a-z_]+", e.component) and e.name, e
        assert e.platform in PLATFORMS and e.topic in (STATE, STATS, EVENT, STRETCH, HISTORY), e
        # settable exactly when HA can send something; buttons read nothing, the rest read a key
        assert (e.settable is not None) == (e.platform in SETTABLE), e
        assert (e.key is None) == (e.platform == "button"), e
        if e.platform == "number":
            assert e.step and e.spec is not None and e.spec.lo is not None and e.spec.hi is not None
            assert e.spec.lo < e.spec.hi
        if e.platform == "sensor":
            assert e.entity_category in (None, "diagnostic"), e  # HA refuses "config" sensors
        assert e.needs in (None, *ALL_CAPABILITIES), e


def test_settable_rows_are_bounded_by_the_settings_metadata_not_by_copies() -> None:
    meta = {f.name: f.metadata for f in dataclasses.fields(DetectionSettings)}
    for key in SETTING_KEYS:
        assert COMMANDS[key].meta is meta[key]
    assert set(SETTING_KEYS) == {"threshold_deg", "dwell_s", "alerts_enabled", "mode"}
    actions = {f.name: f.metadata for f in dataclasses.fields(Actions)}
    for key in ("calibrate", "use_file_settings", "snooze_min", "stretch"):
        assert COMMANDS[key].meta is actions[key]
    assert COMMAND_KEYS == ("calibrate", "use_file_settings", "threshold_deg", "dwell_s",
                            "snooze_min", "alerts_enabled", "mode", "stretch")


def test_a_changed_bound_in_the_table_moves_discovery_and_commands_together(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One definition: tighten threshold_deg's metadata and both what HA offers and what a
    command may set follow, with no other edit."""
    spec = COMMANDS["threshold_deg"]
    monkeypatch.setitem(COMMANDS, "threshold_deg", dataclasses.replace(spec, meta={**spec.meta, "max": 30}))
    comp = payload(WearerInfo("a", "x"))["components"]["threshold"]
    assert comp["max"] == 30
    with pytest.raises(CommandRefused) as err:
        parse_command(b"45", key="threshold_deg")
    assert err.value.kind == "out_of_range" and "must be 3..30" in err.value.reason


def test_every_settable_entity_sends_what_the_command_parser_accepts() -> None:
    comps = payload(WearerInfo("alice", "c4aa102b3301"))["components"]
    for e in EXPOSES:
        if e.settable is None:
            continue
        c = comps[e.component]
        key = c["command_topic"].removeprefix("slouchd/alice/set/")
        assert key == e.command_key
        sent = {"button": [c.get("payload_press")], "switch": [c.get("payload_on"), c.get("payload_off")],
                "select": c.get("options"), "number": [c.get("min"), c.get("max")]}[e.platform]
        for value in sent:
            text = value if isinstance(value, str) else json.dumps(value)
            assert key in parse_command(text.encode(), key=key).values, (e.component, value)


def test_read_keys_lists_what_the_entities_read() -> None:
    state = read_keys(STATE)
    assert state["posture"] == ["posture", "slouching"]
    assert state["dropped_by_reason"] == ["packets_dropped"] and state["gateway"] == ["gateway_drops"]
    assert state["battery"] == ["battery"]
    assert set(read_keys(STATS)) == {"upright_pct", "slouched_min", "sitting_min", "alerts"}
    assert read_keys(EVENT) == {"event_type": ["alert"]}


@pytest.mark.parametrize("sensor,profile,expected", [
    ("simulated", None, set()),
    ("Simulated", None, set()),
    ("replay:/data/day1.csv", None, set()),
    ("C4:AA:10:2B:33:01", "microbit", {RSSI}),
    ("C4:AA:10:2B:33:01", "generic", {BATTERY, RSSI}),
    ("C4:AA:10:2B:33:01", "polar-h10", {BATTERY, RSSI}),
    ("C4:AA:10:2B:33:01", "thingy52", {BATTERY, RSSI}),
    ("C4:AA:10:2B:33:01", "ruuvitag", {RSSI}),  # passive: advertisements only
    ("C4:AA:10:2B:33:01", None, {BATTERY, RSSI}),  # matched when found: may have one
])
def test_capabilities_follow_the_source_and_the_profiles_battery_table(
        sensor: str, profile: str | None, expected: set[str]) -> None:
    loaded = None if profile is None else load_profile(REPO / "firmware_profiles" / f"{profile}.toml")
    assert sensor_capabilities(sensor, loaded) == expected
    assert battery_can_exist(sensor, loaded) == (BATTERY in expected)


def test_a_wearer_without_battery_gets_no_battery_entity_and_a_removal_for_an_old_one() -> None:
    sim = WearerInfo("ana", stable_sensor_id("simulated", "ana"),
                     capabilities=sensor_capabilities("simulated", None))
    assert not sim.has_battery
    comps = payload(sim)["components"]
    # HA deletes a component sent with its platform alone (and ignores it if it never existed).
    assert comps["battery"] == {"platform": "sensor"}
    assert comps["rssi"] == {"platform": "sensor"}
    full = payload(WearerInfo("ana", stable_sensor_id("simulated", "ana")))["components"]
    assert set(comps) == set(full)
    # The training plan's two entities go too: no [coach.plan] enabled in these infos.
    assert comps["plan_day"] == {"platform": "sensor"} and comps["training_today"] == {"platform": "sensor"}
    gone = ("battery", "rssi", "plan_day", "training_today")
    assert all(comps[k] == full[k] for k in comps if k not in gone)
    microbit = WearerInfo("bob", "c4aa102b3301", capabilities=frozenset({RSSI}))
    comps = payload(microbit)["components"]
    assert comps["battery"] == {"platform": "sensor"} and comps["rssi"]["device_class"] == "signal_strength"


def test_the_plan_entities_exist_only_with_the_plan_enabled() -> None:
    on = payload(WearerInfo("ana", "c4aa102b3301", capabilities=frozenset({PLAN})))["components"]
    assert on["plan_day"]["state_class"] == "measurement"
    assert on["training_today"]["unit_of_measurement"] == "min"
    off = payload(WearerInfo("ana", "c4aa102b3301", capabilities=frozenset()))["components"]
    assert off["plan_day"] == {"platform": "sensor"} and off["training_today"] == {"platform": "sensor"}


def test_default_wearer_info_keeps_every_entity() -> None:
    comps = payload(WearerInfo("alice", "c4aa102b3301"))["components"]
    assert len(comps) == len(EXPOSES)
    assert all("unique_id" in c for c in comps.values())
