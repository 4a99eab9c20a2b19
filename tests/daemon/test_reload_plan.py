"""The reload plan: what a new configuration adds, removes, restarts and swaps (pure, no daemon)."""

from __future__ import annotations

from typing import Any

from slouchd.config import Config, parse_config
from slouchd.daemon import ReloadPlan, plan_reload


def cfg(wearers: list[dict[str, Any]], **sections: dict[str, Any]) -> Config:
    return parse_config({"mqtt": {"host": "broker.lan", "port": 1883}, **sections, "wearers": wearers})


ANA = {"name": "ana", "sensor": "simulated", "speed": 10}
BO = {"name": "bo", "sensor": "C4:AA:10:2B:33:01", "profile": "generic"}
CY = {"name": "cy", "sensor": "simulated", "seed": 3}


def running(config: Config) -> dict[str, Any]:
    return {w.name: w for w in config.wearers}


def test_an_unchanged_file_swaps_every_wearer_in_place_and_nothing_else() -> None:
    old = cfg([ANA, BO])
    new = cfg([ANA, BO])
    plan = plan_reload(old, new, running(old))
    assert plan == ReloadPlan(swap=tuple(new.wearers))


def test_wearers_come_and_go_in_the_new_files_order() -> None:
    old = cfg([ANA, BO])
    new = cfg([CY, ANA])
    plan = plan_reload(old, new, running(old))
    assert [w.name for w in plan.add] == ["cy"]
    assert plan.remove == ("bo",)
    assert [w.name for w in plan.swap] == ["ana"]
    assert plan.restart == ()
    assert [(w.name, added) for w, added in plan.in_order(new)] == [("cy", True), ("ana", False)]


def test_a_new_detection_setting_swaps_without_reconnecting() -> None:
    old = cfg([ANA])
    new = cfg([ANA], detection={"threshold_deg": 25.0})
    plan = plan_reload(old, new, running(old))
    assert plan.restart == () and plan.swap == tuple(new.wearers)
    assert not plan.replace_publisher


def test_each_sensor_key_reconnects_only_its_wearer() -> None:
    old = cfg([ANA, BO, CY])
    for key, value in (("speed", 20), ("seed", 9), ("mount", "+y,-z"), ("sensor", "replay:/x.csv")):
        changed = {**ANA, key: value}
        new = cfg([changed, BO, CY])
        plan = plan_reload(old, new, running(old))
        assert plan.restart == ("ana",), key
    new = cfg([ANA, {**BO, "profile": "microbit"}, CY])
    assert plan_reload(old, new, running(old)).restart == ("bo",)


def test_the_running_wearers_are_what_is_compared_not_the_old_file() -> None:
    """A wearer whose restart after the last reload is what runs: compared to what it was given."""
    old = cfg([ANA])
    given = running(cfg([{**ANA, "speed": 30}]))
    plan = plan_reload(old, cfg([ANA]), given)
    assert plan.restart == ("ana",)


def test_mqtt_changes_replace_the_publisher_and_say_what_the_old_one_clears() -> None:
    old = cfg([ANA])
    plan = plan_reload(old, cfg([ANA], mqtt={"host": "broker.lan", "port": 1883, "base_topic": "x"}),
                       running(old))
    assert plan.replace_publisher and plan.clear_topics and not plan.clear_discovery
    # Another broker: nothing is cleared on the old one (it is the old broker's, and stays there).
    plan = plan_reload(old, cfg([ANA], mqtt={"host": "other.lan", "port": 1883, "base_topic": "x"}),
                       running(old))
    assert plan.replace_publisher and not plan.clear_topics and not plan.clear_discovery


def test_home_assistant_discovery_off_or_moved_clears_it_on_the_same_broker() -> None:
    old = cfg([ANA])
    off = plan_reload(old, cfg([ANA], homeassistant={"discovery": False}), running(old))
    assert off.replace_publisher and off.clear_discovery and not off.clear_topics
    moved = plan_reload(old, cfg([ANA], homeassistant={"discovery_prefix": "ha2"}), running(old))
    assert moved.replace_publisher and moved.clear_discovery
    back_on = plan_reload(cfg([ANA], homeassistant={"discovery": False}), cfg([ANA]), running(old))
    assert back_on.replace_publisher and not back_on.clear_discovery


def test_a_rotated_password_file_replaces_the_publisher_alone() -> None:
    old = cfg([ANA])
    plan = plan_reload(old, cfg([ANA]), running(old), password_changed=True)
    assert plan.replace_publisher and not plan.clear_topics and not plan.clear_discovery
    assert plan.add == () and plan.remove == () and plan.restart == ()


def test_daemon_settings_are_reported_for_the_daemon_to_apply_or_warn() -> None:
    old = cfg([ANA])
    plan = plan_reload(old, cfg([ANA], daemon={"log_level": "debug"}), running(old))
    assert plan.logging_changed and not plan.state_dir_changed and not plan.replace_publisher
    plan = plan_reload(old, cfg([ANA], daemon={"state_dir": "/tmp/elsewhere"}), running(old))
    assert plan.state_dir_changed and not plan.logging_changed
