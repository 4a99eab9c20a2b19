"""The precedence rule, pure: a key the file changed since the last Home Assistant change wins."""

from __future__ import annotations

from slouchd.overrides import SettingOverrides


def test_an_unchanged_file_keeps_the_home_assistant_value() -> None:
    ov = SettingOverrides().set({"threshold_deg": 20.0}, {"threshold_deg": 15.0})
    kept, decisions = ov.reconcile({"threshold_deg": 15.0, "dwell_s": 60.0})
    assert kept.values == {"threshold_deg": 20.0} and kept.file_then == {"threshold_deg": 15.0}
    assert [d.kept for d in decisions] == [True]
    assert "threshold_deg = 20.0 from Home Assistant" in decisions[0].describe()
    assert "the file says 15.0" in decisions[0].describe()


def test_a_file_edit_after_the_home_assistant_change_wins() -> None:
    ov = SettingOverrides().set({"threshold_deg": 20.0, "dwell_s": 30.0},
                                {"threshold_deg": 15.0, "dwell_s": 60.0})
    kept, decisions = ov.reconcile({"threshold_deg": 18.0, "dwell_s": 60.0})
    assert kept.values == {"dwell_s": 30.0}
    lost = next(d for d in decisions if not d.kept)
    assert lost.key == "threshold_deg"
    assert lost.describe() == ("threshold_deg = 18.0 from the config file (changed from 15.0 after "
                               "Home Assistant set 20.0)")


def test_a_home_assistant_change_after_the_file_edit_wins_again() -> None:
    ov = SettingOverrides().set({"threshold_deg": 20.0}, {"threshold_deg": 15.0})
    ov, _ = ov.reconcile({"threshold_deg": 18.0})  # the file won
    assert ov.values == {}
    ov = ov.set({"threshold_deg": 22.0}, {"threshold_deg": 18.0})
    kept, _ = ov.reconcile({"threshold_deg": 18.0})
    assert kept.values == {"threshold_deg": 22.0}


def test_a_state_from_before_the_rule_keeps_its_values_and_remembers_the_file_from_now() -> None:
    legacy = SettingOverrides.from_saved({"overrides": {"mode": "tracking"}})
    kept, decisions = legacy.reconcile({"mode": "training"})
    assert kept.values == {"mode": "tracking"} and kept.file_then == {"mode": "training"}
    assert decisions[0].kept
    # ...so a later edit of the file wins.
    assert kept.reconcile({"mode": "silent"})[0].values == {}


def test_saved_tables_of_the_wrong_shape_are_ignored() -> None:
    assert SettingOverrides.from_saved({"overrides": [1, 2], "overrides_file": "x"}).values == {}
    ov = SettingOverrides.from_saved({"overrides": {"dwell_s": 30.0}, "overrides_file": [3]})
    assert ov.values == {"dwell_s": 30.0} and ov.file_then == {}


def test_round_trip_through_the_state_file_tables() -> None:
    ov = SettingOverrides().set({"alerts_enabled": False}, {"alerts_enabled": True})
    again = SettingOverrides.from_saved(ov.to_dict())
    assert again == ov
    assert again.reconcile({"alerts_enabled": True})[0].values == {"alerts_enabled": False}
