"""The Home Assistant blueprint agrees with what slouchd publishes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from slouchd.model import EventKind
from slouchd.publish.homeassistant import discovery_payload
from slouchd.publish.topics import Topics
from slouchd.publish.wearer import WearerInfo

BLUEPRINT = Path(__file__).resolve().parents[2] / "config" / "homeassistant" / "slouchd_phone_alerts.yaml"


class _Input(str):
    """A ``!input name`` reference."""


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!input", lambda loader, node: _Input(loader.construct_scalar(node)))


def load() -> dict[str, Any]:
    return yaml.load(BLUEPRINT.read_text(encoding="utf-8"), Loader=_Loader)


def inputs_used(node: Any) -> set[str]:
    if isinstance(node, _Input):
        return {str(node)}
    if isinstance(node, dict):
        return set().union(*(inputs_used(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(inputs_used(v) for v in node)) if node else set()
    return set()


def test_blueprint_is_an_automation_with_every_input_declared_and_used() -> None:
    bp = load()
    meta = bp["blueprint"]
    assert meta["domain"] == "automation" and meta["name"]
    declared = set(meta["input"])
    body = {k: v for k, v in bp.items() if k != "blueprint"}
    assert inputs_used(body) == declared
    assert bp["triggers"][0]["trigger"] == "state"
    assert meta["input"]["alert_event"]["selector"]["entity"]["filter"][0]["domain"] == "event"
    assert meta["input"]["phone"]["selector"]["device"]["filter"][0]["integration"] == "mobile_app"
    for action in (bp["actions"][0]["choose"][0]["sequence"][0], bp["actions"][0]["default"][0]):
        assert (action["domain"], action["type"]) == ("mobile_app", "notify") and action["message"]


def test_blueprint_event_types_are_ones_the_event_entity_declares() -> None:
    text = BLUEPRINT.read_text(encoding="utf-8")
    used = set(re.findall(r"'(slouch_alert|break_reminder|[a-z]+_[a-z_]+)'", text))
    entity = discovery_payload(WearerInfo("alice", "x"), Topics(), 120)["components"]["alert"]
    assert used and used <= set(entity["event_types"]) == {k.value for k in EventKind}
    assert {"slouch_alert", "break_reminder"} <= used


def test_blueprint_notifies_the_coach_events_and_offers_stretches_after_a_break_reminder() -> None:
    bp = load()
    coach = set(bp["variables"]["coach_events"])
    assert coach == {"stretch_cue", "stretch_complete", "stretch_abandoned", "break_taken", "goal_met",
                     "low_battery", "not_worn_morning"}
    assert coach <= {k.value for k in EventKind}
    offer = bp["actions"][0]["choose"][2]  # the break reminder with a "Stretch now" button
    notify = offer["sequence"][0]
    assert "offer_stretch" in offer["conditions"][0]["value_template"]
    assert [a["title"] for a in notify["data"]["actions"]] == ["Stretch now", "Snooze 30 min"]
