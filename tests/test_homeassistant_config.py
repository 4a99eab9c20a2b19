"""The Home Assistant files in config/homeassistant/ work with what slouchd's discovery creates.

The dashboard names entity ids; Home Assistant makes them from the device name and each
entity's name in the discovery message (``sensor`` + "slouchd alice" + "Sitting time" ->
``sensor.slouchd_alice_sitting_time``). Every id the dashboard names must be one of those, and
the blueprint's buttons must send commands slouchd's own command parser accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from slouchd.publish.commands import parse_command
from slouchd.stretches import load_catalog

REPO = Path(__file__).resolve().parents[1]
HA = REPO / "config" / "homeassistant"
GOLDEN = REPO / "tests" / "publish" / "golden" / "discovery_alice.json"
ENTITY_ID = re.compile(r"^[a-z_]+\.slouchd_[a-z0-9_]+$")
CORE_CARDS = {"glance", "history-graph", "statistics-graph", "entities", "logbook", "tile", "gauge",
              "vertical-stack", "horizontal-stack", "grid", "markdown"}


def slugify(text: str) -> str:
    """Home Assistant's entity-id slug: lower case, runs of anything else become one "_"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def discovered() -> dict[str, dict[str, Any]]:
    """entity id -> discovery component, for the golden wearer "alice"."""
    doc = json.loads(GOLDEN.read_text())
    device = doc["device"]["name"]
    return {f"{c['platform']}.{slugify(device + ' ' + c['name'])}": c for c in doc["components"].values()}


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def cards(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if "type" in node else []
        return found + [c for v in node.values() for c in cards(v)]
    if isinstance(node, list):
        return [c for v in node for c in cards(v)]
    return []


def dashboard() -> dict[str, Any]:
    return yaml.safe_load((HA / "slouchd_dashboard.yaml").read_text(encoding="utf-8"))


def test_the_slug_rule_gives_the_ids_the_docs_show() -> None:
    ids = discovered()
    assert "event.slouchd_alice_alert" in ids  # the blueprint's example
    assert "sensor.slouchd_alice_sitting_time" in ids and "button.slouchd_alice_calibrate_upright" in ids


def test_dashboard_parses_and_names_only_entities_the_discovery_creates() -> None:
    board = dashboard()
    ids = discovered()
    named = {s for s in strings(board) if ENTITY_ID.match(s)}
    assert named, "the dashboard names no slouchd entities"
    assert named <= set(ids), sorted(named - set(ids))
    assert {c["type"] for c in cards(board)} <= CORE_CARDS  # nothing that needs HACS


def test_dashboard_shows_today_the_flexion_history_and_a_week_of_daily_totals() -> None:
    all_cards = cards(dashboard())
    ids = discovered()

    def entities(card: dict[str, Any]) -> set[str]:
        return {s for s in strings(card.get("entities", [])) if ENTITY_ID.match(s)}

    shown = set().union(*(entities(c) for c in all_cards))
    for today in ("upright_today", "slouched_today", "sitting_today", "alerts_today"):
        assert f"sensor.slouchd_alice_{today}" in shown
    history = [c for c in all_cards if c["type"] == "history-graph"]
    assert any("sensor.slouchd_alice_flexion" in entities(c) for c in history)
    week = [c for c in all_cards if c["type"] == "statistics-graph"]
    assert week and all(c["period"] == "day" and c["days_to_show"] == 7 for c in week)
    for card in week:
        for entity_id in entities(card):
            # "change" per day is the day's total only for a counter HA keeps statistics of.
            want = "total_increasing" if "change" in card["stat_types"] else "measurement"
            assert ids[entity_id]["state_class"] == want, entity_id
    weekly = set().union(*(entities(c) for c in week))
    assert {"sensor.slouchd_alice_sitting_today", "sensor.slouchd_alice_slouched_today"} <= weekly


class _Input(str):
    """A blueprint ``!input name`` reference."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!input", lambda loader, node: _Input(loader.construct_scalar(node)))


def blueprint() -> dict[str, Any]:
    return yaml.load((HA / "slouchd_phone_alerts.yaml").read_text(encoding="utf-8"), Loader=_Loader)


def test_blueprint_needs_2024_11_and_says_how_to_install_it() -> None:
    meta = blueprint()["blueprint"]
    assert meta["homeassistant"]["min_version"] == "2024.11.0"  # MQTT device discovery
    assert "/config/blueprints/automation/slouchd/" in meta["description"]


def test_blueprint_buttons_send_commands_slouchd_accepts() -> None:
    bp = blueprint()
    text = json.dumps(bp, default=str)
    titles = {a["title"]: a["action"] for a in _find(bp, "actions") for a in a if isinstance(a, dict)}
    assert set(titles) == {"Snooze 30 min", "Recalibrate", "Stretch now"}
    publishes = [n for n in _dicts(bp) if n.get("action") == "mqtt.publish"]
    assert len(publishes) == 3
    commands = {}
    # "Stretch now" sends {"stretch": <the stretch_session input>}, made by HA's to_json filter.
    session = bp["blueprint"]["input"]["stretch_session"]["default"]
    assert bp["variables"]["stretch_payload"] == "{{ {'stretch': stretch_session} | to_json }}"
    assert session in {s.name for s in load_catalog().sessions}
    for step in publishes:
        data = step["data"]
        assert data["retain"] is False  # slouchd refuses a retained command
        assert data["topic"] == "{{ command_topic }}"
        payload = data["payload"]
        if payload == "{{ stretch_payload }}":
            payload = json.dumps({"stretch": session})
        commands[payload] = parse_command(payload.encode())
    assert {json.dumps(json.loads(p)) for p in commands} == {
        '{"snooze_min": 30}', '{"calibrate": true}', '{"stretch": "quick"}'}
    assert any(c.snooze_min == 30 for c in commands.values()) and any(c.calibrate for c in commands.values())
    # <base>/<wearer>/set, with the wearer from the event and the base topic an input.
    assert bp["variables"]["command_topic"] == "{{ base_topic }}/{{ trigger.to_state.attributes.wearer }}/set"
    assert bp["blueprint"]["input"]["base_topic"]["default"] == "slouchd"
    # Each tap answers only its own notification.
    assert "mobile_app_notification_action" in text and "context.id" in text


def _dicts(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [d for v in node.values() for d in _dicts(v)]
    if isinstance(node, list):
        return [d for v in node for d in _dicts(v)]
    return []


def _find(node: Any, key: str) -> list[Any]:
    return [d[key] for d in _dicts(node) if key in d and isinstance(d[key], list)
            and all(isinstance(a, dict) and "title" in a for a in d[key])]


def test_dashboard_offers_start_stretches_and_the_coach_counts() -> None:
    ids = discovered()
    shown = {s for s in strings(dashboard()) if ENTITY_ID.match(s)}
    assert ids["button.slouchd_alice_start_stretches"]["payload_press"] == "start"
    for entity_id in ("button.slouchd_alice_start_stretches", "sensor.slouchd_alice_stretch_step",
                      "sensor.slouchd_alice_breaks_today", "sensor.slouchd_alice_goal_streak",
                      "binary_sensor.slouchd_alice_goal_met_today"):
        assert entity_id in shown, entity_id
